package pipelines

import "fmt"

// Sources is the "sources" section: the ways events come in besides
// XADD and eddy produce. This package only parses and validates it;
// package ingest runs it.
type Sources struct {
	// HTTP is the HTTP ingest endpoint; nil means none.
	HTTP *HTTPSource `yaml:"http"`
	// MQTT lists MQTT brokers to subscribe to.
	MQTT []MQTTSource `yaml:"mqtt"`
}

// validateSources records the problems of f.Sources; pipelines maps the
// file's pipeline names to their index.
func validateSources(c *checker, f *File, pipelines map[string]int) {
	s := f.Sources
	if s == nil {
		return
	}
	if s.HTTP != nil {
		validateHTTPSource(c, "sources.http", s.HTTP, f, pipelines)
	}
	for i := range s.MQTT {
		validateMQTTSource(c, fmt.Sprintf("sources.mqtt[%d]", i), &s.MQTT[i], f, pipelines)
	}
}

// setSourceDefaults fills in what f.Sources leaves out.
func setSourceDefaults(c *checker, f *File) {
	s := f.Sources
	if s == nil {
		return
	}
	if s.HTTP != nil {
		setHTTPSourceDefaults(c, "sources.http", s.HTTP)
	}
	for i := range s.MQTT {
		setMQTTSourceDefaults(c, fmt.Sprintf("sources.mqtt[%d]", i), &s.MQTT[i])
	}
}
