package eventstore

// DecodeJSONInterned exposes decodeJSON with an intern table to the tests.
var DecodeJSONInterned = decodeJSON
