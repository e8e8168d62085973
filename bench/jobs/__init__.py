"""Benchmark background jobs: a 1,000,000-row CSV scored as a job, with 1 and with 2 RQ workers.

Starts the stack of bench/common.py (always with its own redis-server, so that only the workers
started here take the jobs), writes the CSV once into a temp dir, and for each worker count
starts that many `scripts/worker` processes (RQ workers), submits the CSV through nginx
(POST /api/v1/models/house-prices/jobs, multipart field `file`), polls the job until it has
succeeded (bounded by a deadline), downloads the result and compares it with the predictions of
this process. Meanwhile a thread samples /proc: the gunicorn workers while they receive the upload,
the RQ workers and their work horses (one forked child per RQ job) throughout; each worker logs
the peak RSS of every horse it reaps (wait4), which the report takes for the horses' peaks. Next
to it, the in-process figure: the same CSV read with pandas and scored by the same pipeline in one
thread.

Every process started here is stopped by PID at the end, on errors and on Ctrl-C too, and the
jobs it created are deleted (rows and files). Run it with ./scripts/bench jobs; see
bench/README.md. The modules: data.py (the CSV, the in-process figures, the job rows),
sampling.py (/proc), client.py (the API), runs.py (one job with N workers), report.py, and
__main__.py (the command line).
"""
