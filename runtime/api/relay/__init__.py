"""Engine-bound requests: the request side (read, validate, route, admit) and the reply."""
