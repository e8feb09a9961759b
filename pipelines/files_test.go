package pipelines_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/eddy-streams/eddy/pipelines"
)

// Every file a config names, but for an absolute path, is relative to the
// config file's directory, as schemas are: the same config means the same
// files whatever directory eddy starts in.
func TestLoadResolvesFilesAgainstTheConfigDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	config := `
redis:
  url: rediss://127.0.0.1:6380
  password_file: secrets/redis
  tls: {ca_file: ca.pem, cert_file: /abs/client.pem, key_file: ../keys/client-key.pem}
console:
  admin_token_file: secrets/admin
sources:
  http:
    addr: 127.0.0.1:8443
    tls: {cert_file: http.pem, key_file: http-key.pem}
    tokens:
      sensors: {file: secrets/sensors, pipelines: [iot]}
      env: {env: EDDY_TOKEN, pipelines: [iot]}
  mqtt:
    - name: plant
      broker: mqtts://broker.example:8883
      topics: [{filter: "sensors/#", pipeline: iot}]
      username: eddy
      password_file: secrets/mqtt
      tls: {ca_file: mqtt-ca.pem}
pipelines:
  - name: iot
    input: {stream: iot}
    key: device
    steps:
      - output: {stream: out}
`
	path := filepath.Join(dir, "eddy.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := pipelines.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := func(p string) string { return filepath.Join(dir, p) }
	for _, c := range []struct{ name, got, want string }{
		{"redis.password_file", f.Redis.PasswordFile, in("secrets/redis")},
		{"redis.tls.ca_file", f.Redis.TLS.CAFile, in("ca.pem")},
		{"redis.tls.cert_file (absolute)", f.Redis.TLS.CertFile, "/abs/client.pem"},
		{"redis.tls.key_file", f.Redis.TLS.KeyFile, filepath.Join(filepath.Dir(dir), "keys/client-key.pem")},
		{"console.admin_token_file", f.Console.AdminTokenFile, in("secrets/admin")},
		{"sources.http.tls.cert_file", f.Sources.HTTP.TLS.CertFile, in("http.pem")},
		{"sources.http.tls.key_file", f.Sources.HTTP.TLS.KeyFile, in("http-key.pem")},
		{"sources.http.tokens.sensors.file", f.Sources.HTTP.Tokens["sensors"].File, in("secrets/sensors")},
		{"sources.http.tokens.env.file (none)", f.Sources.HTTP.Tokens["env"].File, ""},
		{"sources.mqtt[0].password_file", f.Sources.MQTT[0].PasswordFile, in("secrets/mqtt")},
		{"sources.mqtt[0].tls.ca_file", f.Sources.MQTT[0].TLS.CAFile, in("mqtt-ca.pem")},
		{"sources.mqtt[0].tls.cert_file (none)", f.Sources.MQTT[0].TLS.CertFile, ""},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
}
