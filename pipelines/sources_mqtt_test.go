package pipelines

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

const mqttPipelines = `pipelines:
  - name: iot
    input: {stream: sensors, payload: data}
    key: device_id
  - name: nested
    input: {stream: n, payload: data}
    key: device.id
`

func TestMQTTSourceDefaults(t *testing.T) {
	f := parse(t, `sources:
  mqtt:
    - name: plant
      broker: mqtt://127.0.0.1
      topics:
        - {filter: "sensors/{device_id}/{sensor}", pipeline: iot}
        - {filter: "raw/#", pipeline: iot, qos: 0}
`+mqttPipelines)
	s := f.Sources.MQTT[0]
	want := MQTTSource{
		Name: "plant", Broker: "mqtt://127.0.0.1", ClientID: DefaultMQTTClientID("plant"),
		SessionExpiry: DefaultMQTTSessionExpiry, KeepAlive: DefaultMQTTKeepAlive, ConnectTimeout: DefaultMQTTConnectTimeout,
		Reconnect:      MQTTReconnect{MinBackoff: DefaultMQTTMinBackoff, MaxBackoff: DefaultMQTTMaxBackoff},
		ReceiveMaximum: DefaultMQTTReceiveMaximum, BatchSize: DefaultMQTTBatchSize, BatchWait: DefaultMQTTBatchWait,
	}
	topics := s.Topics
	s.Topics = nil
	if !reflect.DeepEqual(s, want) {
		t.Errorf("source =\n%+v\nwant\n%+v", s, want)
	}
	if topics[0].QoS != DefaultMQTTQoS || topics[1].QoS != 0 {
		t.Errorf("qos = %d, %d; want %d (default), 0 (set)", topics[0].QoS, topics[1].QoS, DefaultMQTTQoS)
	}
	if flt := topics[0].ParsedFilter(); flt == nil || flt.MQTT() != "sensors/+/+" {
		t.Errorf("ParsedFilter() = %v, want sensors/+/+", flt)
	}
	if !strings.HasPrefix(s.ClientID, "eddy-plant-") || s.ClientID != DefaultMQTTClientID("plant") {
		t.Errorf("client_id = %q, want eddy-plant-<hostname>, the same at every load", s.ClientID)
	}
	if s.UsesTLS() {
		t.Error("UsesTLS() for mqtt:// without tls = true")
	}
}

func TestMQTTSourceSettings(t *testing.T) {
	f := parse(t, `sources:
  mqtt:
    - name: a
      broker: mqtts://broker.example:8884
      client_id: ingest-1
      username: eddy
      password_env: MQTT_PASSWORD
      tls: {ca_file: ca.pem, cert_file: c.pem, key_file: k.pem, server_name: broker, insecure_skip_verify: false}
      session_expiry: 24h
      share_group: ingest
      keep_alive: 1m
      connect_timeout: 3s
      reconnect: {min_backoff: 50ms, max_backoff: 2s}
      receive_maximum: 2000
      batch_size: 1_000
      batch_wait: 1ms
      validate: true
      topics:
        - {filter: "s/{dev}/{sensor}", pipeline: iot, key: dev, qos: 1}
    - name: b
      broker: embedded
      topics: [{filter: "#", pipeline: iot}]
    - name: c
      broker: embedded://127.0.0.1:0
      topics: [{filter: "#", pipeline: iot}]
    - name: d
      broker: tcp://h
      tls: {}
      password_file: /run/secrets/mqtt
      topics: [{filter: "#", pipeline: iot}]
`+mqttPipelines)
	a := f.Sources.MQTT[0]
	if a.ClientID != "ingest-1" || a.SessionExpiry != 24*time.Hour || a.KeepAlive != time.Minute || a.ReceiveMaximum != 2000 ||
		a.BatchSize != 1000 || a.BatchWait != time.Millisecond || !a.Validate || a.ShareGroup != "ingest" ||
		a.Reconnect.MaxBackoff != 2*time.Second || a.TLS.ServerName != "broker" || a.Topics[0].Key != "dev" || !a.UsesTLS() {
		t.Errorf("source a = %+v", a)
	}
	for i, want := range []string{DefaultMQTTEmbeddedAddr, "127.0.0.1:0", ""} {
		addr, ok := f.Sources.MQTT[i+1].EmbeddedAddr()
		if addr != want || ok != (want != "") {
			t.Errorf("sources.mqtt[%d].EmbeddedAddr() = %q %v, want %q", i+1, addr, ok, want)
		}
	}
	if !f.Sources.MQTT[3].UsesTLS() {
		t.Error("tcp:// with tls: {} does not use TLS")
	}
	for _, tt := range []struct{ broker, want string }{
		{"mqtt://h", "h:1883"}, {"mqtts://h", "h:8883"}, {"ssl://h:1", "h:1"}, {"tcp://[::1]:7", "[::1]:7"},
	} {
		if got, err := MQTTBrokerAddr(tt.broker); got != tt.want || err != nil {
			t.Errorf("MQTTBrokerAddr(%q) = %q %v, want %q", tt.broker, got, err, tt.want)
		}
	}
}

// Every problem is reported at once, with its path and line.
func TestMQTTSourceProblems(t *testing.T) {
	tests := []struct {
		name, source string
		want         []string
	}{
		{"required", `    - topics: []`, []string{
			"test.yaml:3: sources.mqtt[0].name: required",
			"test.yaml:3: sources.mqtt[0].broker: required",
			"test.yaml:3: sources.mqtt[0].topics: at least one topic is required",
		}},
		{"bad name and duplicate", `    - {name: A, broker: mqtt://h, topics: [{filter: a, pipeline: iot}]}
    - {name: x, broker: mqtt://h, topics: [{filter: a, pipeline: iot}]}
    - {name: x, broker: mqtt://h, topics: [{filter: a, pipeline: iot}]}`, []string{
			`test.yaml:3: sources.mqtt[0].name: "A" must match`,
			`test.yaml:5: sources.mqtt[2].name: duplicate MQTT source name "x" (first at line 4)`,
		}},
		{"brokers", `    - {name: a, broker: "http://h", topics: [{filter: a, pipeline: iot}]}
    - {name: b, broker: "mqtt://user:hunter22@h", topics: [{filter: a, pipeline: iot}]}
    - {name: c, broker: "mqtt://h:99999", topics: [{filter: a, pipeline: iot}]}
    - {name: d, broker: "mqtt://h/path", topics: [{filter: a, pipeline: iot}]}
    - {name: e, broker: "mqtt://", topics: [{filter: a, pipeline: iot}]}
    - {name: f, broker: "embedded://nowhere", topics: [{filter: a, pipeline: iot}]}
    - {name: g, broker: "mqtt://h\x7f", topics: [{filter: a, pipeline: iot}]}
    - {name: h, broker: embedded, username: u, topics: [{filter: a, pipeline: iot}]}`, []string{
			`test.yaml:3: sources.mqtt[0].broker: want a URL with scheme mqtt, mqtts, tcp or ssl (or embedded), got "http"`,
			`test.yaml:4: sources.mqtt[1].broker: no credentials in the URL: use username and password_env or password_file`,
			`test.yaml:5: sources.mqtt[2].broker: port "99999": want 1 to 65535`,
			`test.yaml:6: sources.mqtt[3].broker: want mqtt://host[:port], with no path, query or fragment`,
			`test.yaml:7: sources.mqtt[4].broker: want mqtt://host[:port], got no host`,
			`test.yaml:8: sources.mqtt[5].broker: want embedded or embedded://host:port, got "embedded://nowhere"`,
			`test.yaml:9: sources.mqtt[6].broker: want mqtt://host[:port], mqtts://host[:port] or embedded: net/url: invalid control character in URL`,
			`test.yaml:10: sources.mqtt[7].broker: the embedded broker (demo only) takes no tls, username or password`,
		}},
		{"secrets and tls", `    - name: a
      broker: mqtt://h
      client_id: "has space"
      password_env: "1BAD"
      password_file: /x
      tls: {cert_file: c.pem}
      topics: [{filter: a, pipeline: iot}]
    - name: b
      broker: mqtt://h
      password: hunter22
      topics: [{filter: a, pipeline: iot}]`, []string{
			`test.yaml:5: sources.mqtt[0].client_id: want 1 to 256 printable ASCII characters without spaces, got "has space"`,
			`test.yaml:6: sources.mqtt[0].password_env: set password_env or password_file, not both`,
			`test.yaml:8: sources.mqtt[0].tls.key_file: cert_file and key_file go together: set both or neither`,
			`test.yaml:12: sources.mqtt[1].password: unknown key (want one of: `,
		}},
		{"bounds", `    - name: a
      broker: mqtt://h
      session_expiry: 1500ms
      keep_alive: 70000s
      connect_timeout: 0s
      reconnect: {min_backoff: 1s, max_backoff: 500ms}
      receive_maximum: 65536
      batch_size: 0
      batch_wait: 2s
      share_group: "a/b"
      topics: [{filter: a, pipeline: iot}]`, []string{
			`test.yaml:5: sources.mqtt[0].session_expiry: 1.5s: MQTT counts it in whole seconds`,
			`test.yaml:6: sources.mqtt[0].keep_alive: must be at most 18h12m15s`,
			`test.yaml:7: sources.mqtt[0].connect_timeout: must be at least 1ms`,
			`test.yaml:8: sources.mqtt[0].reconnect.max_backoff: 500ms is below min_backoff 1s`,
			`test.yaml:9: sources.mqtt[0].receive_maximum: must be at most 65535`,
			`test.yaml:10: sources.mqtt[0].batch_size: must be at least 1`,
			`test.yaml:11: sources.mqtt[0].batch_wait: must be at most 1s`,
			`test.yaml:12: sources.mqtt[0].share_group: want a name without /, + or #, got "a/b"`,
		}},
		{"fractions", `    - name: a
      broker: mqtt://h
      receive_maximum: 1.5
      topics: [{filter: a, pipeline: iot, qos: 0.5}]`, []string{
			`test.yaml:5: sources.mqtt[0].receive_maximum: want an integer, got "1.5"`,
			`test.yaml:6: sources.mqtt[0].topics[0].qos: want an integer, got "0.5"`,
		}},
		{"topics", `    - name: a
      broker: mqtt://h
      topics:
        - {filter: "a/#/b", pipeline: iot}
        - {filter: "s/{d}/{d}", pipeline: nope}
        - {filter: "s/{dev}", pipeline: iot, key: device, qos: 2}
        - {filter: "s/{dev}", pipeline: nested, key: dev}
        - {pipeline: iot}
        - {filter: "s/{}", pipeline: iot}
        - {filter: "x+", pipeline: iot}
        - {filter: "$share/g/x", pipeline: iot}`, []string{
			`test.yaml:6: sources.mqtt[0].topics[0].filter: "a/#/b": level 2: "#" must be the last level`,
			`test.yaml:7: sources.mqtt[0].topics[1].filter: "s/{d}/{d}": level 3: "{d}": the name "d" is already the name of level 2`,
			`test.yaml:7: sources.mqtt[0].topics[1].pipeline: no pipeline named "nope" in this file`,
			`test.yaml:8: sources.mqtt[0].topics[2].key: "device" is not a named level of the filter "s/{dev}" (levels: dev)`,
			`test.yaml:8: sources.mqtt[0].topics[2].qos: want 0 or 1, got 2 (QoS 2 is not supported`,
			`test.yaml:9: sources.mqtt[0].topics[3].key: the level's value would be the top-level field "dev", but pipeline "nested" takes its key from "device.id"`,
			`test.yaml:10: sources.mqtt[0].topics[4].filter: required`,
			`test.yaml:11: sources.mqtt[0].topics[5].filter: "s/{}": level 2: "{}": the name is empty`,
			`test.yaml:12: sources.mqtt[0].topics[6].filter: "x+": level 1: "x+": a wildcard ("+" or "#") must fill its whole level`,
			`test.yaml:13: sources.mqtt[0].topics[7].filter: "$share/g/x": a shared subscription is not written in the filter: set share_group`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problems(t, "sources:\n  mqtt:\n"+tt.source+"\n"+mqttPipelines, nil)
			if len(got) != len(tt.want) {
				t.Errorf("got %d problems, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for _, w := range tt.want {
				found := false
				for _, g := range got {
					found = found || strings.HasPrefix(g, w)
				}
				if !found {
					t.Errorf("no problem starts with\n%s\ngot:\n%s", w, strings.Join(got, "\n"))
				}
			}
			for _, g := range got {
				if strings.Contains(g, "hunter22") {
					t.Errorf("a problem quotes the password: %s", g)
				}
			}
		})
	}
}

// The MQTT rows of docs/configuration.md show the defaults the code sets,
// and every row whose default is a value is checked here.
func TestMQTTDocumentedDefaults(t *testing.T) {
	want := map[string]string{
		"sources.mqtt[].client_id":                "`" + MQTTClientIDPrefix + "<name>-<hostname>`",
		"sources.mqtt[].session_expiry":           code(DefaultMQTTSessionExpiry),
		"sources.mqtt[].share_group":              code(`""`),
		"sources.mqtt[].keep_alive":               code(DefaultMQTTKeepAlive),
		"sources.mqtt[].connect_timeout":          code(DefaultMQTTConnectTimeout),
		"sources.mqtt[].reconnect.min_backoff":    code(DefaultMQTTMinBackoff),
		"sources.mqtt[].reconnect.max_backoff":    code(DefaultMQTTMaxBackoff),
		"sources.mqtt[].receive_maximum":          code(DefaultMQTTReceiveMaximum),
		"sources.mqtt[].batch_size":               code(DefaultMQTTBatchSize),
		"sources.mqtt[].batch_wait":               code(DefaultMQTTBatchWait),
		"sources.mqtt[].validate":                 code(false),
		"sources.mqtt[].topics[].key":             code(`""`),
		"sources.mqtt[].topics[].qos":             code(DefaultMQTTQoS),
		"sources.mqtt[].tls.insecure_skip_verify": "off",
	}
	notValues := map[string]bool{"": true, "required": true, "none": true, "—": true}
	rows := docTable(t, "## MQTT sources")
	for path, w := range want {
		if got, ok := rows[path]; !ok {
			t.Errorf("docs/configuration.md has no row for `%s`", path)
		} else if got != w {
			t.Errorf("docs/configuration.md: `%s` default %s, want %s (the code's)", path, got, w)
		}
	}
	for path, got := range rows {
		if _, ok := want[path]; !ok && !notValues[got] {
			t.Errorf("docs/configuration.md: `%s` default %s is not checked: add it to TestMQTTDocumentedDefaults", path, got)
		}
	}
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "| `sources.mqtt[].broker` | required | ") || !strings.Contains(string(doc), "`"+DefaultMQTTEmbeddedAddr+"`") {
		t.Errorf("the broker row does not name the embedded broker's address %s", DefaultMQTTEmbeddedAddr)
	}
}

// The embedded broker has no authentication: it may listen on loopback
// addresses only, and anything else is refused at its path.
func TestMQTTEmbeddedLoopbackOnly(t *testing.T) {
	for _, tt := range []struct {
		broker string
		ok     bool
	}{
		{"embedded", true},
		{"embedded://127.0.0.1:1884", true},
		{"embedded://127.3.2.1:0", true},
		{"embedded://localhost:1884", true},
		{"embedded://LocalHost:1884", true},
		{"embedded://[::1]:1884", true},
		{"embedded://[::ffff:127.0.0.1]:1884", true},
		{"embedded://0.0.0.0:1884", false},
		{"embedded://[::]:1884", false},
		{"embedded://10.0.0.5:1884", false},
		{"embedded://example.com:1884", false},
		{"embedded://localhost.example.com:1884", false},
	} {
		got := problems(t, "sources:\n  mqtt:\n    - {name: a, broker: \""+tt.broker+"\", topics: [{filter: a, pipeline: iot}]}\n"+mqttPipelines, nil)
		want := []string(nil)
		if !tt.ok {
			want = []string{`test.yaml:3: sources.mqtt[0].broker: the embedded broker has no authentication (demo only): it listens on loopback only (127.0.0.0/8, ::1 or localhost), got "` + tt.broker + `"`}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("broker %s: problems %q, want %q", tt.broker, got, want)
		}
	}
}
