// Package pipelines owns Eddy's config files: their YAML schema, strict
// loading, validation with every problem reported at once (file, line and
// path), the registry of step types with the built-in steps, and the
// building of each pipeline's processor.Options, Decoder and Handler.
//
// It does not run anything: it talks to no Redis, starts no goroutines and
// logs nothing. The engine (package processor) runs what it builds;
// cmd/eddy wires the two and sets the logger, observer and consumer name;
// package simulate generates the load that a file's "simulate" list asks
// for.
//
// Import direction: cmd/eddy -> pipelines -> processor. Nothing here is
// imported by processor.
//
// # Files
//
// Load and Parse decode strictly: an unknown key, a wrong type, a bad
// duration (Go syntax: 500ms, 10s, 24h), an unknown step type or an
// expression that does not compile is a problem, and so is every
// validation rule broken. All problems come back together in one
// *ConfigError, one per line as "FILE:LINE: PATH: MESSAGE". The schema,
// with each field's default, is the types File, Pipeline, Input, Dedupe,
// Retry, DeadLetter, Redis, HTTP, Simulate and Schema; the files under configs/
// are working examples, each loaded by a test.
//
// # Steps
//
// A pipeline's "steps" list holds one-key mappings {<type>: <config>}. Each
// event runs through the steps in order; see Step for what a step returns.
// The built-in steps are:
//
//   - require: [path, …] — each dotted path must be present and not null,
//     else the event is dead-lettered with reason "invalid".
//   - validate: <condition> — false dead-letters the event with reason
//     "invalid" and the condition's text.
//   - filter: <condition> — false drops the event: it is acked as processed,
//     later steps do not run, effects recorded by earlier steps are kept.
//   - map: {field: <expression>, …} — sets top-level payload fields, in
//     YAML order; each expression sees the fields set before it.
//   - output: {stream, max_len} — emits "key", "id" (dedupe id, or entry id)
//     and "data" (the payload as JSON, as it arrived unless a step changed
//     it) to stream, capped at max_len (0: no cap).
//   - state: {name, fields, incr, distinct, ttl} — the key's own state:
//     hash name of the message key, kept by the partition's owner and
//     written in the commit that acks the event; fields sets fields (a nil
//     result leaves a field as it is), incr adds to them, distinct adds to
//     a HyperLogLog, ttl expires the state. Expressions read it as
//     state.<name>.<field>. Keyed state needs ordering "key".
//   - state: {hash, fields, incr} — a read model for others to read: the
//     hash named hash, where "$key" stands for the message key.
//   - schema: {type, version_field, default_version} — validates the event
//     against the JSON Schema of the file's "schemas" list for type at
//     the version in version_field (default "schema_version"; absent or
//     null: default_version, default 1). A violation dead-letters the event
//     with reason "schema", naming the JSON pointer and the keyword that
//     failed. Needs input.payload. Pipeline.CheckSchema applies the same
//     rules to an event at the door (HTTP and MQTT ingest).
//   - fault: {transient, permanent} — for rehearsing failure handling in
//     demos and tests only: fails those fractions of attempts with a retried
//     error or a permanent one (reason "fault_injected").
//
// The analytics steps keep per-key state and timers in the engine, written
// by the commit that acks each event or timer firing, and emit results
// (entries with key, id, kind and data) to their output stream exactly once
// (analytics.go has what they share: name, time, output, late):
//
//   - window: {name, output, kind, size, hop, gap, grace, group_by,
//     aggregates, emit, late} — tumbling, hopping and session windows with
//     count, sum, min, max, avg, first, last and count_distinct.
//   - session: {name, output, gap, max_length, grace, page, converted,
//     max_pages, late} — clickstream sessions, summarised when they close.
//   - funnel: {name, output, steps, within, order, emit, grace, late} —
//     ordered steps within a time limit: progress, completion, drop-off.
//   - threshold: {name, output, when, for, clear, keep_firing_for,
//     group_by, values} — an alert while a condition holds long enough,
//     resolved with hysteresis.
//   - absence: {name, output, after, group_by, values, forget_after} — an
//     alert when a key sends nothing for a while, resolved when it sends
//     again; forgotten (its state deleted) after forget_after of silence.
//   - saga: {name, output, start, correlate, fields, timeout, steps} — a
//     multi-service transaction per key: commands emitted in order, replies
//     as events, a timeout per step, compensations in reverse order.
//
// Custom steps are registered on a Registry with Register before Load; a
// factory decodes its config with StepConfig.Decode, which is as strict as
// the rest of the file. A custom step that keeps state across events does
// it through Message effects (State, StateSet, SetTimer) like those.
//
// # Expressions
//
// validate, filter, map and state take expressions in the language of
// github.com/expr-lang/expr, compiled at load time. An expression sees:
//
//   - every top-level field of the payload by name (user_id, amount, …);
//     nested objects with dots (user.id); a field absent from the event is
//     nil, so write amount ?? 0 where it may be missing;
//   - _key, the message key, and _id, the stream entry id;
//   - state, the key's state of the pipeline's state steps with a name:
//     state.counts.views (integers as int, other numbers as float, the
//     rest as strings; an unset field is nil, so write
//     (state.counts.views ?? 0) + 1).
//
// A field named like a builtin function (type, count, len, …) reads the
// field; the function is still there when called: type(x). Numbers in a
// JSON payload are int64 when they are integers, float64 otherwise; with
// input.payload "" every field is a string. An error at run time (nil >
// 0, int("x")) dead-letters the event with reason "invalid".
package pipelines
