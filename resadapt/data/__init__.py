"""Data layer: manifest schema, the built-in video-QA renderer, video probing/decoding, validation and shards."""
