# state.py -- owns job records and their persistence: one JSON file per job in
# <state-dir>/jobs/, archives in <state-dir>/archives/, tokens in tokens.json;
# the per-job status rule (running -> success/failure) lives here too.
import json
import os
import threading
import time

from . import filters


class Store:
    def __init__(self, state_dir):
        self.dir = state_dir
        self.jobs_dir = os.path.join(state_dir, "jobs")
        self.arch_dir = os.path.join(state_dir, "archives")
        os.makedirs(self.jobs_dir, exist_ok=True)
        os.makedirs(self.arch_dir, exist_ok=True)
        self.lock = threading.Lock()
        self.jobs = {}
        self.by_file = {}
        for name in sorted(os.listdir(self.jobs_dir)):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.jobs_dir, name)) as f:
                    job = json.load(f)
            except (OSError, ValueError):
                continue
            self.jobs[job["job_id"]] = job
            self.by_file[job["file_id"]] = job["job_id"]
        for name in os.listdir(self.arch_dir):
            if name.endswith(".tmp"):  # an interrupted build
                os.unlink(os.path.join(self.arch_dir, name))

    def token_file(self):
        return os.path.join(self.dir, "tokens.json")

    def archive_path(self, job_id):
        return os.path.join(self.arch_dir, job_id + ".zip")

    def save(self, job):
        path = os.path.join(self.jobs_dir, job["job_id"] + ".json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(job, f, indent=1, sort_keys=True)
        os.replace(tmp, path)

    def add(self, job):
        with self.lock:
            self.jobs[job["job_id"]] = job
            self.by_file[job["file_id"]] = job["job_id"]
            self.save(job)

    def get(self, job_id):
        with self.lock:
            return self.jobs.get(job_id)

    def by_file_id(self, file_id):
        with self.lock:
            jid = self.by_file.get(file_id)
            return self.jobs.get(jid) if jid else None

    def all(self):
        with self.lock:
            return sorted(self.jobs.values(), key=lambda j: (j["created"], j["job_id"]))

    def finish(self, job_id, status):
        with self.lock:
            job = self.jobs[job_id]
            job["forced_status"] = status
            self.save(job)
            return job


def status(job, built):
    """running | success | failure.  `built`: whether the archive is ready.
    A job runs for its job_delay (wall clock) and, if it succeeds, until its
    archive is built; a filter naming fail.example.com in `hosts` fails."""
    forced = job.get("forced_status")
    if forced:
        return forced
    if time.time() - job["created"] < job["params"]["job_delay"]:
        return "running"
    if filters.is_failure(job["filter"]):
        return "failure"
    return "success" if built else "running"
