"""The only code that touches Delta, MLflow, files, clocks and the environment."""
