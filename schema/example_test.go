package schema_test

import (
	"errors"
	"fmt"

	"github.com/eddy-streams/eddy/schema"
)

func Example() {
	v1, _ := schema.Compile("reading.v1.json", []byte(`{
		"type": "object",
		"required": ["device_id", "value"],
		"additionalProperties": false,
		"properties": {"device_id": {"type": "string"}, "value": {"type": "number"}}
	}`))
	v2, _ := schema.Compile("reading.v2.json", []byte(`{
		"type": "object",
		"required": ["device_id", "value"],
		"additionalProperties": false,
		"properties": {"device_id": {"type": "string"}, "value": {"type": "number"},
			"firmware": {"type": "string"}}
	}`))

	err := v1.ValidateJSON([]byte(`{"device_id": "d1", "value": "hot"}`))
	var ve *schema.ValidationError
	if errors.As(err, &ve) {
		fmt.Println(ve.Pointer, ve.Rule, ve.Message)
	}

	r := schema.Check(v1, v2)
	fmt.Println(r.Level())
	for _, f := range r.Findings {
		fmt.Println(f)
	}
	// Output:
	// /value type got string, want number
	// backward
	// forward breaks at /properties/firmware: additionalProperties: "firmware" is not allowed by the old schema (additionalProperties: false); new events may have it
}
