package pipelines

// NewWindowForTest is the window step's factory, for the external tests to
// register on a test registry until NewRegistry registers it.
var NewWindowForTest = newWindow

// WindowBindForTest runs the window steps' check against the steps before
// them (bindPipeline: numeric aggregates of a field a schema declares not
// a number) on every pipeline of f, and returns the problems, nil for none.
// It stands in for the call that registry.build is to make.
func WindowBindForTest(f *File) error {
	c := newChecker(f.Name)
	for _, p := range f.Pipelines {
		for _, b := range p.steps {
			if w, ok := b.step.(*windowStep); ok {
				sc := p.Steps[b.index]
				c.lines = sc.lines()
				w.bindPipeline(c, sc, p)
			}
		}
	}
	return c.err()
}
