package pipelines

// NewWindowForTest is the window step's factory, for the external tests to
// register on a test registry of their own.
var NewWindowForTest = newWindow
