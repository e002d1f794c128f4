"""`nst batch`: many images, resumable, on this machine or a Ray cluster.

inputs.py finds the inputs and names the outputs, manifest.py remembers what is done, task.py is
one image's job, executor.py runs jobs (here; ray_executor.py on a cluster), progress.py shows
it, run.py puts them together."""

from .run import run_from_args

__all__ = ["run_from_args"]
