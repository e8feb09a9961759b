package pipelines

// NewSagaForTest is the saga step's factory, for the external tests to
// register on a test registry of their own.
var NewSagaForTest = newSaga
