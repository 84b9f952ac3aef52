"""Validation of records: the cross-field rules (`rules`) and the compiled fast path (`compiled`)
derived from the marshmallow schemas, which stay the one declaration of the contract."""
