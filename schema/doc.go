// Package schema owns Eddy's JSON Schemas: compiling schema files
// (github.com/santhosh-tekuri/jsonschema/v6, draft 2020-12 unless the file
// says otherwise in "$schema", with "format" asserted), a Registry of them
// by event type and version, validation that names the JSON pointer and the
// keyword of a failure (ValidationError), and a checker that tells whether
// a new version of a schema is backward, forward or fully compatible with
// the registered one, and why not (Check).
//
// It does not know where schemas are configured, which field of an event
// carries its version, or what happens to an event that fails: package
// pipelines reads the "schemas" list and runs the "schema" step, package
// ingest validates at the door, cmd/eddy runs "eddy schema check". It talks
// to no Redis and starts no goroutines.
//
// Import direction: pipelines, ingest and cmd/eddy import schema; schema
// imports nothing of Eddy.
//
// # Compatibility
//
// Backward compatible means the new schema accepts every event the old one
// accepts (consumers on the new version read old events); forward
// compatible means the old schema accepts every event the new one accepts
// (consumers still on the old version read new events); full is both. The
// answers follow JSON Schema's own semantics, not a convention: with an
// open content model (additionalProperties not false) an old event may
// carry any property with any value, so a property added with a type is
// not backward compatible; closing the model (additionalProperties: false)
// makes an added optional property backward compatible. Where the checker
// cannot decide (oneOf, not, if/then/else, patternProperties, recursive
// $ref, …) it says Unknown with the schema pointer, never Compatible.
package schema
