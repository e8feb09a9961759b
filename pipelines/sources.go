package pipelines

// Sources is the "sources" section: the ways events come in besides
// XADD and eddy produce (HTTP and MQTT ingest). This package only parses
// and validates it; package ingest runs it.
type Sources struct{}

// validateSources records the problems of f.Sources; pipelines maps the
// file's pipeline names to their index.
func validateSources(c *checker, f *File, pipelines map[string]int) {}

// setSourceDefaults fills in what f.Sources leaves out.
func setSourceDefaults(c *checker, f *File) {}
