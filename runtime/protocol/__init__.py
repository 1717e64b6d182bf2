"""Wire schemas, named as OpenAI's spec names them. Nothing heavy, no engine logic."""
