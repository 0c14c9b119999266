# state.py -- owns the records and their persistence: one JSON file per record
# in <state-dir>/jobs/ (WAF jobs, HSS tasks, and the WAF event-log files made
# by "foreign" jobs and by WAF itself daily), their files in
# <state-dir>/archives/<id>.<ext>, tokens in tokens.json, the storage signing
# key in storage.key and the projects whose list was seeded in projects.json;
# the per-record status rule (running -> success/failure) and the file
# timestamp rule live here too.
import json
import os
import secrets
import threading
import time

from . import filters, hss


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
        self.by_obs = {}  # (project, obsname) -> job id: storage finds its object at once
        for name in sorted(os.listdir(self.jobs_dir)):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.jobs_dir, name)) as f:
                    job = json.load(f)
            except (OSError, ValueError):
                continue
            job.setdefault("service", "waf")
            job.setdefault("origin", "job")
            self.jobs[job["job_id"]] = job
            self.by_file[job["file_id"]] = job["job_id"]
            self._index_obs(job)
        for name in os.listdir(self.arch_dir):
            if name.endswith(".tmp"):  # an interrupted build
                os.unlink(os.path.join(self.arch_dir, name))

    def token_file(self):
        return os.path.join(self.dir, "tokens.json")

    def archive_path(self, job):
        return os.path.join(self.arch_dir, "%s.%s" % (job["job_id"], job.get("ext") or "zip"))

    def storage_key(self):
        path = os.path.join(self.dir, "storage.key")
        with self.lock:
            try:
                with open(path) as f:
                    return f.read().strip()
            except OSError:
                key = secrets.token_hex(20)
                with open(path, "w") as f:
                    f.write(key)
                return key

    def seeded(self, project, mark=False):
        """Whether the project's event-log list was seeded (daily and foreign files)."""
        path = os.path.join(self.dir, "projects.json")
        with self.lock:
            try:
                with open(path) as f:
                    done = set(json.load(f))
            except (OSError, ValueError):
                done = set()
            if project in done:
                return True
            if mark:
                done.add(project)
                with open(path + ".tmp", "w") as f:
                    json.dump(sorted(done), f)
                os.replace(path + ".tmp", path)
            return False

    def save(self, job):
        path = os.path.join(self.jobs_dir, job["job_id"] + ".json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(job, f, indent=1, sort_keys=True)
        os.replace(tmp, path)

    def _index_obs(self, job):
        if job.get("file"):
            self.by_obs[(job["project_id"], job["file"]["obsname"])] = job["job_id"]

    def add(self, job):
        with self.lock:
            self.jobs[job["job_id"]] = job
            self.by_file[job["file_id"]] = job["job_id"]
            self._index_obs(job)
            self.save(job)

    def get(self, job_id):
        with self.lock:
            return self.jobs.get(job_id)

    def by_object(self, project, obsname):
        with self.lock:
            jid = self.by_obs.get((project, obsname))
            return self.jobs.get(jid) if jid else None

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
            job["forced_at"] = time.time()
            self.save(job)
            return job

    def wipe(self):
        """Forget every record and file (admin reset)."""
        with self.lock:
            self.jobs, self.by_file, self.by_obs = {}, {}, {}
            for d in (self.jobs_dir, self.arch_dir):
                for name in os.listdir(d):
                    try:
                        os.unlink(os.path.join(d, name))
                    except OSError:
                        pass
            try:
                os.unlink(os.path.join(self.dir, "projects.json"))
            except OSError:
                pass

    def update(self, job_id, **kw):
        with self.lock:
            job = self.jobs[job_id]
            job.update(kw)
            self.save(job)
            return job


def status(job, built):
    """running | success | failure.  `built`: whether the archive is ready.
    A job runs for its job_delay (wall clock) and, if it succeeds, until its
    archive is built; a WAF filter naming fail.example.com in `hosts`, or an HSS
    task with host_name=fail.example.com, fails."""
    forced = job.get("forced_status")
    if forced:
        return forced
    if time.time() - job["created"] < job["params"]["job_delay"]:
        return "running"
    if is_failure(job):
        return "failure"
    return "success" if built else "running"


def is_failure(job):
    if job.get("service") == "hss":
        return hss.is_failure(job["filter"])
    return filters.is_failure(job["filter"])


def success_wall(job):
    """Wall-clock second the record ended (forced, else created + job_delay)."""
    if job.get("forced_status"):
        return job.get("forced_at") or job["created"]
    return job["created"] + job["params"]["job_delay"]


def file_timestamp(job):
    """The `timestamp` (emulator ms) of a WAF record's file in the event-log list."""
    if job.get("file_ts") is not None:
        return job["file_ts"]
    return job["submit_ms"] + int(round((success_wall(job) - job["created"]) * 1000))
