"""MLflow pyfunc wrappers of the tokenizer and the recommender, logged as models-from-code: MLflow
keeps these files' source with the model, and `mlflow.pyfunc.load_model` runs them against the
installed genrec package. The weights are safetensors / npz artifacts; nothing is pickled."""
