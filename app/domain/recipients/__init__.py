"""Art. 19: recipients told of completed rectifications and erasures."""
