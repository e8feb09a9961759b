package pipelines

// Schema is one entry of the "schemas" list: a JSON Schema file
// registered for an event type and version.
type Schema struct{}

// validateSchemas records the problems of f.Schemas.
func validateSchemas(c *checker, f *File) {}
