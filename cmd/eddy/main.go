// Command eddy runs, checks and feeds Eddy pipelines. It is the only place
// that handles signals, exits, creates the Redis client, the logger and the
// metrics registry, and wires them to the engine (processor), the
// configuration (pipelines) and the collectors (metrics).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal stops the process at once
	}()
	code := execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitError carries an exit code; its message, if any, is already printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// globals are the flags every command takes.
type globals struct {
	redisURL  string
	tls       tlsFlags // --redis-ca, --redis-cert, …
	logFormat string
	logLevel  string
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
}

// execute runs the command line args and returns the exit code: 0 success,
// 1 failure, 2 bad usage.
func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "eddy",
		Short:         "Eddy: a low-latency stream processor on Redis Streams",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q; see eddy --help", args[0])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			_ = cmd.Help()
			return exitError{code: 2}
		},
	}
	root.SetArgs(args)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.redisURL, "redis", os.Getenv("EDDY_REDIS_URL"),
		"Redis URL for every command, overriding the config's redis section; rediss:// for TLS; prefer the env EDDY_REDIS_URL for a URL with a password (a command line is visible to other users)")
	pf.StringVar(&g.tls.ca, flagRedisCA, os.Getenv("EDDY_REDIS_CA"),
		"PEM file of the CA(s) the Redis server's certificate must chain to (default: the system's); implies TLS (env EDDY_REDIS_CA)")
	pf.StringVar(&g.tls.cert, flagRedisCert, os.Getenv("EDDY_REDIS_CERT"),
		"PEM client certificate, for a Redis that wants one (tls-auth-clients); with --redis-key; implies TLS (env EDDY_REDIS_CERT)")
	pf.StringVar(&g.tls.key, flagRedisKey, os.Getenv("EDDY_REDIS_KEY"),
		"PEM key of --redis-cert (env EDDY_REDIS_KEY)")
	pf.StringVar(&g.tls.serverName, flagRedisName, os.Getenv("EDDY_REDIS_SERVER_NAME"),
		"name the Redis server's certificate must carry (default: the host connected to; each node's own on a Cluster); implies TLS (env EDDY_REDIS_SERVER_NAME)")
	insecure, insecureErr := envBool(envRedisInsecure)
	g.tls.insecureEnvErr = insecureErr
	pf.BoolVar(&g.tls.insecure, flagRedisInsecure, insecure,
		"UNSAFE, for tests only: accept any certificate from Redis, so that anyone on the path can read and change the traffic; logged as a warning; implies TLS (env "+envRedisInsecure+")")
	pf.StringVar(&g.logFormat, "log-format", "json", "log format: json or console")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.AddCommand(runCommand(g), validateCommand(g), produceCommand(g), simulateCommand(g), dlqCommand(g), statusCommand(g), versionCommand(g), rebuildCommand(g),
		benchCommand(g), benchBaselineCommand(g))
	root.AddCommand(ingestCommand(g))
	root.AddCommand(schemaCommand(g))
	root.AddCommand(benchIngestCommand(g))
	root.AddCommand(testCommand(g))
	root.AddCommand(consoleCommand(g))

	err := root.ExecuteContext(ctx)
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintln(stderr, "eddy:", err)
		if isUsage(err) {
			return 2
		}
		return 1
	}
}

// usageError marks an error in how the command was called.
type usageError struct{ error }

// noArgs is cobra.NoArgs with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return usageError{err}
	}
	return nil
}

func isUsage(err error) bool {
	var u usageError
	return errors.As(err, &u)
}

func (g *globals) logger() (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(g.logLevel)
	if err != nil {
		return nil, usageError{fmt.Errorf("--log-level: %w", err)}
	}
	var enc zapcore.Encoder
	switch g.logFormat {
	case "json":
		cfg := zap.NewProductionEncoderConfig()
		cfg.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(cfg)
	case "console":
		cfg := zap.NewDevelopmentEncoderConfig()
		cfg.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(cfg)
	default:
		return nil, usageError{fmt.Errorf("--log-format %q: want json or console", g.logFormat)}
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(g.stderr)), level)), nil
}
