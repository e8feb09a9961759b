package pipelines

// The session and funnel factories, for the external tests to register on
// a test registry until NewRegistry registers them.
var (
	NewSessionForTest = newSession
	NewFunnelForTest  = newFunnel
)
