package pipelines

// The threshold and absence factories, for the external tests to register
// on a test registry until NewRegistry registers them.
var (
	NewThresholdForTest = newThreshold
	NewAbsenceForTest   = newAbsence
)
