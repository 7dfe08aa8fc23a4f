package protocol

import _ "embed"

//go:embed asyncapi.yaml
var asyncAPI []byte

// AsyncAPI returns the sync channel's AsyncAPI 3.0 document.
func AsyncAPI() []byte { return asyncAPI }
