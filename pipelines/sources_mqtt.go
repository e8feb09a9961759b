package pipelines

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/eddy-streams/eddy/ingest/topic"
)

// Defaults of sources.mqtt[]: the one place they are set (setMQTTSourceDefaults)
// and the values docs/configuration.md shows (a test compares them).
const (
	// DefaultMQTTSessionExpiry is session_expiry: how long the broker keeps
	// the source's session (its subscriptions and the QoS 1 messages not
	// yet acked) while the source is away.
	DefaultMQTTSessionExpiry = time.Hour
	// DefaultMQTTKeepAlive is keep_alive.
	DefaultMQTTKeepAlive = 30 * time.Second
	// DefaultMQTTConnectTimeout is connect_timeout.
	DefaultMQTTConnectTimeout = 10 * time.Second
	// DefaultMQTTMinBackoff and DefaultMQTTMaxBackoff are reconnect's
	// min_backoff and max_backoff: the waits between connection attempts,
	// and between attempts to append a batch while Redis fails.
	DefaultMQTTMinBackoff = 100 * time.Millisecond
	DefaultMQTTMaxBackoff = 10 * time.Second
	// DefaultMQTTReceiveMaximum is receive_maximum: QoS 1 messages the
	// broker may send before the source has acked them.
	DefaultMQTTReceiveMaximum = 1000
	// DefaultMQTTBatchSize is batch_size: messages appended to Redis in one
	// round trip.
	DefaultMQTTBatchSize = 500
	// DefaultMQTTBatchWait is batch_wait: how long the first message of a
	// batch waits for others.
	DefaultMQTTBatchWait = 5 * time.Millisecond
	// DefaultMQTTQoS is topics[].qos.
	DefaultMQTTQoS = 1
	// DefaultMQTTEmbeddedAddr is where broker "embedded" listens.
	DefaultMQTTEmbeddedAddr = "127.0.0.1:1884"
	// MQTTClientIDPrefix starts the default client_id,
	// "eddy-<name>-<hostname>".
	MQTTClientIDPrefix = "eddy-"
	// MaxMQTTReceiveMaximum bounds receive_maximum (an MQTT two-byte
	// integer).
	MaxMQTTReceiveMaximum = 65535
	// MaxMQTTBatchSize bounds batch_size.
	MaxMQTTBatchSize = 10000
	// MaxMQTTKeepAlive bounds keep_alive (an MQTT two-byte integer of
	// seconds).
	MaxMQTTKeepAlive = 65535 * time.Second
	// MaxMQTTSessionExpiry bounds session_expiry (MQTT's four-byte integer
	// of seconds).
	MaxMQTTSessionExpiry = math.MaxUint32 * time.Second
)

// MQTT broker URL schemes. "embedded" starts an MQTT broker inside eddy,
// for the demo only.
const (
	MQTTEmbedded = "embedded"
)

// MQTTSource is one entry of the "sources.mqtt" list: a broker to
// subscribe to and where its messages go. This package only checks it;
// package ingest runs it. A password comes from PasswordEnv or
// PasswordFile, read when the source starts: never from the file itself.
type MQTTSource struct {
	// Name names the source in logs and metrics ("mqtt:<name>"):
	// ^[a-z0-9][a-z0-9_-]*$, unique among the MQTT sources. Required.
	Name string `yaml:"name"`
	// Broker is mqtt://host[:port] (port 1883 by default), mqtts://host[:port]
	// (TLS, 8883), tcp:// and ssl:// alike; or "embedded" (an MQTT broker
	// inside eddy run, on DefaultMQTTEmbeddedAddr; "embedded://host:port"
	// to choose, host a loopback one: 127.0.0.0/8, ::1 or localhost, as
	// it has no authentication), for the demo only. Required.
	Broker string `yaml:"broker"`
	// ClientID is the MQTT client identifier. The broker keeps the session
	// under it, so it must be the same at every start and differ between
	// two processes. Default: MQTTClientIDPrefix + name + "-" + the host name.
	ClientID string `yaml:"client_id"`
	// Username is the MQTT user name. Default: none.
	Username string `yaml:"username"`
	// PasswordEnv names the environment variable that holds the password.
	// Default: none.
	PasswordEnv string `yaml:"password_env"`
	// PasswordFile is a file whose content is the password (one trailing
	// newline dropped). Default: none.
	PasswordFile string `yaml:"password_file"`
	// TLS, present (even empty), makes the connection use TLS, as an
	// mqtts:// URL does. Default: TLS only for mqtts:// and ssl://.
	TLS *MQTTTLS `yaml:"tls"`
	// SessionExpiry is how long the broker keeps the session while the
	// source is away (clean start is always off). Whole seconds, 1s to
	// MaxMQTTSessionExpiry. Default DefaultMQTTSessionExpiry.
	SessionExpiry time.Duration `yaml:"session_expiry"`
	// ShareGroup, when set, subscribes with "$share/<group>/<filter>", so
	// that the processes of one group split the messages. Default "":
	// plain subscriptions.
	ShareGroup string `yaml:"share_group"`
	// KeepAlive is the MQTT keep-alive, whole seconds up to
	// MaxMQTTKeepAlive. Default DefaultMQTTKeepAlive.
	KeepAlive time.Duration `yaml:"keep_alive"`
	// ConnectTimeout bounds one connection attempt. Default
	// DefaultMQTTConnectTimeout.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// Reconnect times the retries of connections and of appends to Redis.
	Reconnect MQTTReconnect `yaml:"reconnect"`
	// ReceiveMaximum is how many QoS 1 messages the broker may send before
	// they are acked, 1..MaxMQTTReceiveMaximum: it bounds what the source
	// holds in memory. Default DefaultMQTTReceiveMaximum.
	ReceiveMaximum int `yaml:"receive_maximum"`
	// BatchSize is how many messages are appended to Redis in one round
	// trip, 1..MaxMQTTBatchSize. Default DefaultMQTTBatchSize.
	BatchSize int `yaml:"batch_size"`
	// BatchWait is how long the first message of a batch waits for more.
	// Default DefaultMQTTBatchWait.
	BatchWait time.Duration `yaml:"batch_wait"`
	// Validate checks each event against its pipeline's schema step at the
	// door; an event that fails is still appended, for the pipeline to
	// dead-letter, and counted as rejected. Default false.
	Validate bool `yaml:"validate"`
	// Topics say which filters to subscribe to and where their messages
	// go. At least one.
	Topics []MQTTTopic `yaml:"topics"`
}

// MQTTTLS is a source's "tls" section.
type MQTTTLS struct {
	// CAFile is a PEM file of the CAs the broker's certificate must chain
	// to. Default: the system's.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key, both
	// or neither. Default: none.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name the broker's certificate must carry.
	// Default: the broker URL's host.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any certificate. Unsafe; for tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// MQTTReconnect is a source's "reconnect" section.
type MQTTReconnect struct {
	// MinBackoff is the first wait, doubled after each failure up to
	// MaxBackoff. Default DefaultMQTTMinBackoff.
	MinBackoff time.Duration `yaml:"min_backoff"`
	// MaxBackoff caps the wait, >= MinBackoff. Default DefaultMQTTMaxBackoff.
	MaxBackoff time.Duration `yaml:"max_backoff"`
}

// MQTTTopic is one entry of a source's "topics" list.
type MQTTTopic struct {
	// Filter is an MQTT topic filter whose levels may be named:
	// "sensors/{device_id}/{sensor}" subscribes to "sensors/+/+" and sets
	// device_id and sensor in each event, over the payload's own fields of
	// those names: the broker's ACL on topics is the authority on who the
	// device is (see package ingest/topic). Required.
	Filter string `yaml:"filter"`
	// Pipeline names the pipeline whose input receives the messages.
	// Required.
	Pipeline string `yaml:"pipeline"`
	// Key names the level whose value is the event's key: it is set in
	// the event under the pipeline's key field, over the payload's own.
	// Default "": the key comes from the payload (or from a level named
	// like the pipeline's key).
	Key string `yaml:"key"`
	// QoS is the subscription's QoS, 0 (at most once) or 1 (at least once:
	// acked only once Redis has the event). Default DefaultMQTTQoS.
	QoS int `yaml:"qos"`

	filter *topic.Filter
}

// ParsedFilter returns the topic's parsed filter (set by Load and Parse).
func (t *MQTTTopic) ParsedFilter() *topic.Filter { return t.filter }

// EmbeddedAddr returns the address an "embedded" broker listens on, and
// whether the source's broker is the embedded one.
func (s *MQTTSource) EmbeddedAddr() (string, bool) {
	if s.Broker == MQTTEmbedded {
		return DefaultMQTTEmbeddedAddr, true
	}
	if rest, ok := strings.CutPrefix(s.Broker, MQTTEmbedded+"://"); ok {
		return rest, true
	}
	return "", false
}

// UsesTLS reports whether the source connects with TLS: an mqtts:// or
// ssl:// broker, or a tls section.
func (s *MQTTSource) UsesTLS() bool {
	if s.TLS != nil {
		return true
	}
	u, err := url.Parse(s.Broker)
	return err == nil && (u.Scheme == "mqtts" || u.Scheme == "ssl")
}

var (
	mqttSchemes   = map[string]string{"mqtt": "1883", "tcp": "1883", "mqtts": "8883", "ssl": "8883"}
	shareGroupRE  = regexp.MustCompile(`^[^/+#\x00]+$`)
	mqttClientIDs = regexp.MustCompile(`^[\x21-\x7e]{1,256}$`) // printable ASCII, no space
)

func validateMQTTSource(c *checker, path string, s *MQTTSource, f *File, pipelines map[string]int) {
	at := func(key string) string { return path + "." + key }
	set := func(key string) bool { return c.has(at(key)) }

	switch {
	case s.Name == "":
		c.addf(at("name"), "required")
	case !pipelineNameRE.MatchString(s.Name):
		c.addf(at("name"), "%q must match %s", s.Name, pipelineNameRE)
	default:
		for i := range f.Sources.MQTT {
			o := &f.Sources.MQTT[i]
			if o == s {
				break
			}
			if o.Name == s.Name {
				c.addf(at("name"), "duplicate MQTT source name %q (first at line %d)", s.Name, c.lineOf(fmt.Sprintf("sources.mqtt[%d].name", i)))
				break
			}
		}
	}
	validateMQTTBroker(c, at("broker"), s)
	if set("client_id") && !mqttClientIDs.MatchString(s.ClientID) {
		c.addf(at("client_id"), "want 1 to 256 printable ASCII characters without spaces, got %q", s.ClientID)
	}
	if s.PasswordEnv != "" && s.PasswordFile != "" {
		c.addf(at("password_env"), "set password_env or password_file, not both")
	}
	if s.PasswordEnv != "" && !envNameRE.MatchString(s.PasswordEnv) {
		c.addf(at("password_env"), "want the name of an environment variable ([A-Za-z_][A-Za-z0-9_]*), got %q", s.PasswordEnv)
	}
	if (set("password_env") || set("password_file")) && s.PasswordEnv == "" && s.PasswordFile == "" {
		c.addf(at("password_env"), "empty: give a variable or file name, or leave the key out")
	}
	if t := s.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		c.addf(at("tls.key_file"), "cert_file and key_file go together: set both or neither")
	}
	if _, embedded := s.EmbeddedAddr(); embedded && (s.TLS != nil || s.Username != "" || s.PasswordEnv != "" || s.PasswordFile != "") {
		c.addf(at("broker"), "the embedded broker (demo only) takes no tls, username or password")
	}
	if set("share_group") && !shareGroupRE.MatchString(s.ShareGroup) {
		c.addf(at("share_group"), "want a name without /, + or #, got %q", s.ShareGroup)
	}
	for _, k := range []struct {
		key      string
		v        time.Duration
		min, max time.Duration
		seconds  bool
	}{
		{"session_expiry", s.SessionExpiry, time.Second, MaxMQTTSessionExpiry, true},
		{"keep_alive", s.KeepAlive, time.Second, MaxMQTTKeepAlive, true},
		{"connect_timeout", s.ConnectTimeout, time.Millisecond, 0, false},
		{"reconnect.min_backoff", s.Reconnect.MinBackoff, time.Millisecond, 0, false},
		{"reconnect.max_backoff", s.Reconnect.MaxBackoff, time.Millisecond, 0, false},
		{"batch_wait", s.BatchWait, time.Microsecond, time.Second, false},
	} {
		switch {
		case !set(k.key):
		case k.v < k.min:
			c.addf(at(k.key), "must be at least %s", k.min)
		case k.max > 0 && k.v > k.max:
			c.addf(at(k.key), "must be at most %s", k.max)
		case k.seconds && k.v%time.Second != 0:
			c.addf(at(k.key), "%s: MQTT counts it in whole seconds", k.v)
		}
	}
	if set("reconnect.min_backoff") && set("reconnect.max_backoff") && s.Reconnect.MaxBackoff > 0 && s.Reconnect.MaxBackoff < s.Reconnect.MinBackoff {
		c.addf(at("reconnect.max_backoff"), "%s is below min_backoff %s", s.Reconnect.MaxBackoff, s.Reconnect.MinBackoff)
	}
	for _, k := range []struct {
		key      string
		v, limit int
	}{{"receive_maximum", s.ReceiveMaximum, MaxMQTTReceiveMaximum}, {"batch_size", s.BatchSize, MaxMQTTBatchSize}} {
		switch {
		case !set(k.key):
		case k.v < 1:
			c.addf(at(k.key), "must be at least 1")
		case k.v > k.limit:
			c.addf(at(k.key), "must be at most %d", k.limit)
		}
	}
	if len(s.Topics) == 0 {
		c.addf(at("topics"), "at least one topic is required")
	}
	for i := range s.Topics {
		validateMQTTTopic(c, fmt.Sprintf("%s.topics[%d]", path, i), &s.Topics[i], f, pipelines)
	}
}

func validateMQTTBroker(c *checker, path string, s *MQTTSource) {
	if s.Broker == "" {
		c.addf(path, "required")
		return
	}
	if addr, ok := s.EmbeddedAddr(); ok {
		switch {
		case !validHostPort(addr) && !strings.HasSuffix(addr, ":0"):
			c.addf(path, "want embedded or embedded://host:port, got %q", s.Broker)
		case !loopbackHost(addr):
			c.addf(path, "the embedded broker has no authentication (demo only): it listens on loopback only (127.0.0.0/8, ::1 or localhost), got %q", s.Broker)
		}
		return
	}
	u, err := url.Parse(s.Broker)
	if err != nil {
		c.addf(path, "want mqtt://host[:port], mqtts://host[:port] or embedded: %v", stripURL(err))
		return
	}
	if _, ok := mqttSchemes[u.Scheme]; !ok {
		c.addf(path, "want a URL with scheme mqtt, mqtts, tcp or ssl (or embedded), got %q", u.Scheme)
		return
	}
	switch {
	case u.User != nil:
		c.addf(path, "no credentials in the URL: use username and password_env or password_file")
	case u.Hostname() == "":
		c.addf(path, "want mqtt://host[:port], got no host")
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		c.addf(path, "want mqtt://host[:port], with no path, query or fragment")
	case u.Port() != "":
		if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
			c.addf(path, "port %q: want 1 to 65535", u.Port())
		}
	}
}

// loopbackHost reports whether the host of addr (host:port) is a
// loopback one: localhost, or an IP address in 127.0.0.0/8 or ::1. An
// empty host (every interface) is not.
func loopbackHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// stripURL keeps a url.Parse error's cause: the URL may hold a password.
func stripURL(err error) error {
	if ue, ok := err.(*url.Error); ok { //nolint:errorlint // url.Parse returns *url.Error itself
		return ue.Err
	}
	return err
}

func validateMQTTTopic(c *checker, path string, t *MQTTTopic, f *File, pipelines map[string]int) {
	at := func(key string) string { return path + "." + key }
	if t.Filter == "" {
		c.addf(at("filter"), "required")
	} else if flt, err := topic.Parse(t.Filter); err != nil {
		c.addf(at("filter"), "%q: %v", t.Filter, err)
	} else {
		t.filter = flt
	}
	var p *Pipeline
	switch i, ok := pipelines[t.Pipeline]; {
	case t.Pipeline == "":
		c.addf(at("pipeline"), "required")
	case !ok:
		c.addf(at("pipeline"), "no pipeline named %q in this file", t.Pipeline)
	default:
		p = f.Pipelines[i]
	}
	if t.Key != "" && t.filter != nil && !t.filter.Has(t.Key) {
		c.addf(at("key"), "%q is not a named level of the filter %q (levels: %s)", t.Key, t.Filter, strings.Join(t.filter.Names(), ", "))
	} else if t.Key != "" && p != nil && p.Input.Payload != "" && strings.Contains(p.Key, ".") {
		c.addf(at("key"), "the level's value would be the top-level field %q, but pipeline %q takes its key from %q: give it a top-level key", t.Key, p.Name, p.Key)
	}
	if c.has(at("qos")) && t.QoS != 0 && t.QoS != 1 {
		c.addf(at("qos"), "want 0 or 1, got %d (QoS 2 is not supported: QoS 1 with the dedupe of the pipeline gives exactly once)", t.QoS)
	}
}

func setMQTTSourceDefaults(c *checker, path string, s *MQTTSource) {
	at := func(key string) string { return path + "." + key }
	if s.ClientID == "" {
		s.ClientID = DefaultMQTTClientID(s.Name)
	}
	if s.SessionExpiry == 0 {
		s.SessionExpiry = DefaultMQTTSessionExpiry
	}
	if s.KeepAlive == 0 {
		s.KeepAlive = DefaultMQTTKeepAlive
	}
	if s.ConnectTimeout == 0 {
		s.ConnectTimeout = DefaultMQTTConnectTimeout
	}
	if s.Reconnect.MinBackoff == 0 {
		s.Reconnect.MinBackoff = DefaultMQTTMinBackoff
	}
	if s.Reconnect.MaxBackoff == 0 {
		s.Reconnect.MaxBackoff = max(DefaultMQTTMaxBackoff, s.Reconnect.MinBackoff)
	}
	if s.ReceiveMaximum == 0 {
		s.ReceiveMaximum = DefaultMQTTReceiveMaximum
	}
	if s.BatchSize == 0 {
		s.BatchSize = DefaultMQTTBatchSize
	}
	if s.BatchWait == 0 {
		s.BatchWait = DefaultMQTTBatchWait
	}
	for i := range s.Topics {
		if !c.has(fmt.Sprintf("%s[%d].qos", at("topics"), i)) {
			s.Topics[i].QoS = DefaultMQTTQoS
		}
	}
}

// DefaultMQTTClientID is the client_id of a source named name that sets
// none: "eddy-<name>-<hostname>", the same at every start on this host.
func DefaultMQTTClientID(name string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	host = strings.Map(func(r rune) rune {
		if r <= ' ' || r > '~' {
			return '_'
		}
		return r
	}, host)
	return MQTTClientIDPrefix + name + "-" + host
}

// MQTTBrokerAddr returns the host:port of a source's broker URL, with the
// scheme's default port when it has none.
func MQTTBrokerAddr(broker string) (string, error) {
	u, err := url.Parse(broker)
	if err != nil {
		return "", stripURL(err)
	}
	port, ok := mqttSchemes[u.Scheme]
	if !ok {
		return "", fmt.Errorf("scheme %q: want mqtt, mqtts, tcp or ssl", u.Scheme)
	}
	if u.Port() != "" {
		port = u.Port()
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}
