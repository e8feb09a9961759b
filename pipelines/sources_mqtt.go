package pipelines

// MQTTSource is one entry of the "sources.mqtt" list.
type MQTTSource struct{}

func validateMQTTSource(c *checker, path string, s *MQTTSource, f *File, pipelines map[string]int) {}

func setMQTTSourceDefaults(c *checker, path string, s *MQTTSource) {}
