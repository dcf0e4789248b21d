"""Reference solutions of the course, one module per week; the exercises are generated from them."""
