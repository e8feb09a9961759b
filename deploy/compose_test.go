package deploy_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/eddy-streams/eddy/internal/mosquittotest"
	"github.com/eddy-streams/eddy/pipelines"
)

// compose is what the tests read of `docker-compose config`'s output (the
// file with anchors, defaults and paths resolved).
type compose struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string            `yaml:"image"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	RawVolumes  []string          `yaml:"volumes"`
	Deploy      struct {
		Replicas int `yaml:"replicas"`
	} `yaml:"deploy"`
	Build *struct {
		Context string `yaml:"context"`
	} `yaml:"build"`
	Volumes []mount `yaml:"-"`
}

// mount is one volume of a service: a bind mount (Source an absolute path)
// or a named volume.
type mount struct{ Source, Target string }

func (m mount) bind() bool { return filepath.IsAbs(m.Source) }

// composeConfig validates docker-compose.yml with `docker-compose config
// -q` and returns it as docker-compose resolves it.
func composeConfig(t testing.TB) compose {
	t.Helper()
	bin := need(t, "docker-compose", "docker-compose")
	runIn(t, nil, bin, "-f", composeFile, "config", "-q")
	out := runIn(t, []string{"EDDY_INGEST_TOKEN="}, bin, "-f", composeFile, "config")
	var c compose
	if err := yaml.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	for name, s := range c.Services {
		for _, v := range s.RawVolumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				t.Fatalf("service %s: volume %q is not source:target", name, v)
			}
			s.Volumes = append(s.Volumes, mount{Source: parts[0], Target: parts[1]})
		}
		c.Services[name] = s
	}
	return c
}

// docker-compose.yml passes `docker-compose config -q` and runs the stack
// the README describes: Redis with AOF on a volume, several worker
// replicas, eddy ingest, mosquitto, the simulators, Prometheus with the
// rules and Grafana with the provisioning, the eddy services on the image
// the Dockerfile builds. Every file it mounts is one a native test loads.
func TestComposeConfig(t *testing.T) {
	c := composeConfig(t)
	names := make([]string, 0, len(c.Services))
	for n := range c.Services {
		names = append(names, n)
	}
	slices.Sort(names)
	want := []string{"eddy", "eddy-ingest", "grafana", "mosquitto", "prometheus", "redis", "simulator-clicks", "simulator-iot"}
	if !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}

	redis := c.Services["redis"]
	mustf(t, slices.Contains(redis.Command, "--appendonly") && redis.Command[slices.Index(redis.Command, "--appendonly")+1] == "yes",
		"redis command %v: want --appendonly yes", redis.Command)
	mustf(t, slices.Contains(redis.Volumes, mount{Source: "redis-data", Target: "/data"}), "redis volumes %v: want redis-data:/data", redis.Volumes)
	if _, ok := c.Volumes["redis-data"]; !ok {
		t.Errorf("no named volume redis-data")
	}

	for name, verb := range map[string]string{"eddy": "run", "eddy-ingest": "ingest", "simulator-clicks": "simulate", "simulator-iot": "simulate"} {
		s := c.Services[name]
		mustf(t, s.Build != nil && s.Build.Context != "", "service %s is not built from the Dockerfile", name)
		mustf(t, s.Image == "eddy:local", "service %s: image %q, want eddy:local", name, s.Image)
		mustf(t, len(s.Command) > 0 && s.Command[0] == verb, "service %s: command %v, want eddy %s", name, s.Command, verb)
	}
	mustf(t, c.Services["eddy"].Deploy.Replicas >= 2, "eddy: %d replicas, want at least 2", c.Services["eddy"].Deploy.Replicas)
	mustf(t, slices.Contains(c.Services["eddy"].Command, "--no-sources"), "eddy workers %v: want --no-sources (eddy-ingest runs them)", c.Services["eddy"].Command)
	for _, s := range []string{"eddy", "eddy-ingest"} {
		mustf(t, slices.Contains(c.Services[s].Volumes, mount{Source: mustAbs(t, eddyConfig), Target: "/etc/eddy/eddy.yaml"}),
			"service %s does not mount %s at /etc/eddy/eddy.yaml: %v", s, eddyConfig, c.Services[s].Volumes)
	}
	prom := c.Services["prometheus"]
	for _, f := range []string{promConfig, promRules} {
		mustf(t, slices.Contains(prom.Volumes, mount{Source: mustAbs(t, f), Target: "/etc/prometheus/" + filepath.Base(f)}),
			"prometheus does not mount %s next to its config: %v", f, prom.Volumes)
	}

	// Every bind mount is a file a native test loads, or a directory of such files.
	for name, s := range c.Services {
		for _, m := range s.Volumes {
			if !m.bind() {
				continue
			}
			rel, err := filepath.Rel(mustAbs(t, "."), m.Source)
			if err != nil {
				t.Fatal(err)
			}
			rel = filepath.ToSlash(rel)
			fi, err := os.Stat(m.Source)
			if err != nil {
				t.Errorf("service %s mounts %s: %v", name, rel, err)
				continue
			}
			if !fi.IsDir() {
				mustf(t, nativelyLoaded[rel] != "", "service %s mounts %s, which no native test loads", name, rel)
				continue
			}
			err = filepath.WalkDir(m.Source, func(p string, e os.DirEntry, err error) error {
				if err != nil || e.IsDir() {
					return err
				}
				r, _ := filepath.Rel(mustAbs(t, "."), p)
				mustf(t, nativelyLoaded[filepath.ToSlash(r)] != "", "service %s mounts %s, whose file %s no native test loads", name, rel, filepath.ToSlash(r))
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}
	}
}

// mustAbs is the absolute path of rel, from the root.
func mustAbs(t testing.TB, rel string) string {
	t.Helper()
	p, err := filepath.Abs(path(rel))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// deploy/eddy.yaml is a valid config for the stack: Redis, MQTT broker and
// HTTP listener are the compose services' and ports, and the simulators
// send to pipelines it has.
func TestComposeEddyConfig(t *testing.T) {
	f, err := pipelines.Load(path(eddyConfig), nil)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Redis   struct{ URL string }  `yaml:"redis"`
		HTTP    struct{ Addr string } `yaml:"http"`
		Sources struct {
			MQTT []struct{ Broker string } `yaml:"mqtt"`
		} `yaml:"sources"`
	}
	readYAML(t, eddyConfig, &raw)
	mustf(t, raw.Redis.URL == "redis://redis:6379", "redis.url %q, want redis://redis:6379", raw.Redis.URL)
	mustf(t, raw.HTTP.Addr == "0.0.0.0:9180", "http.addr %q, want 0.0.0.0:9180 (what Prometheus scrapes)", raw.HTTP.Addr)
	mustf(t, len(raw.Sources.MQTT) == 1 && raw.Sources.MQTT[0].Broker == "mqtt://mosquitto:1883", "sources.mqtt %+v, want one on mqtt://mosquitto:1883", raw.Sources.MQTT)

	names := map[string]bool{}
	for _, p := range f.Pipelines {
		names[p.Name] = true
	}
	c := composeConfig(t)
	clicks := strings.Join(c.Services["simulator-clicks"].Command, " ")
	mustf(t, strings.Contains(clicks, "--to http://eddy-ingest:9180/v1/pipelines/clickstream/events") && names["clickstream"],
		"simulator-clicks %q: want it to post to eddy-ingest's clickstream pipeline", clicks)
	mustf(t, strings.Contains(clicks, "--token-env EDDY_INGEST_TOKEN"), "simulator-clicks %q: want --token-env EDDY_INGEST_TOKEN", clicks)
	iot := strings.Join(c.Services["simulator-iot"].Command, " ")
	mustf(t, strings.Contains(iot, "--kind iot --to mqtt://mosquitto:1883") && names["iot"], "simulator-iot %q: want iot readings to mosquitto", iot)
}

// deploy/mosquitto/mosquitto.conf runs a real mosquitto (its listener
// moved to a free loopback port and its persistence to a temp dir, which
// mosquittotest sets), and listens where deploy/eddy.yaml's broker URL says.
func TestMosquittoConf(t *testing.T) {
	var conf []string
	listener := ""
	for _, l := range strings.Split(string(read(t, mosquittoConf)), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "listener "):
			listener = l
		case strings.HasPrefix(l, "persistence_location "):
		default:
			conf = append(conf, l)
		}
	}
	mustf(t, listener == "listener 1883", "%s: %q, want listener 1883 (mqtt://mosquitto:1883 in %s)", mosquittoConf, listener, eddyConfig)
	b := mosquittotest.StartWith(t, mosquittotest.Options{Conf: conf})
	if b.Port() == 0 {
		t.Fatal("mosquitto did not start")
	}
}
