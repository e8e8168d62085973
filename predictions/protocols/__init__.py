"""The protocols other servers speak, on our one scoring path.

`oip.py`: the Open Inference Protocol V2 (KServe, MLServer, Triton): its request body is an
input format (parsers/oip.py, `formats.OIP`), so an oversized one becomes a job like any
other; this module checks what needs the version and builds the answers.
`mlflow.py`: MLflow's scoring protocol; its request shapes are JSON forms the JSON parser
reads for every endpoint (parsers/json.py), so this module only builds the answer.
"""
