package pipelines

// HTTPSource is the "sources.http" section.
type HTTPSource struct{}

func validateHTTPSource(c *checker, path string, s *HTTPSource, f *File, pipelines map[string]int) {}

func setHTTPSourceDefaults(c *checker, path string, s *HTTPSource) {}
