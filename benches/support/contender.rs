//! One operator of the peer benchmark (ours or the peer) as a child process on the benchmark's
//! control plane, with a kubeconfig of its own ServiceAccount, measured the same way whichever
//! it is: CPU and RSS from /proc, its API requests from kube-apiserver's audit log (its user's
//! lines), its provider requests from the GitLab stand-in's record.

use crate::process::{cpu_of, proc_kib, stop};
use crate::real_api::{ApiCall, AuditTail, RealApi};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, ListParams};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// What to start and how to recognise its work.
pub struct Spec {
    pub label: String,
    /// Names its files in the report folder (`STEM-N.log`, ...).
    pub stem: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub kubeconfig: PathBuf,
    /// Its ServiceAccount's user name in the audit log.
    pub user: String,
    /// The objects it makes Ready.
    pub resource: ApiResource,
}

/// From the start of the process to every object Ready.
#[derive(Clone, Debug, Default)]
pub struct Converged {
    /// Process start to the last object's first successful status write (or, when a write left
    /// an object not Ready, to the list that first showed all Ready).
    pub all_ready_secs: f64,
    /// Process start to the first successful status write (start-up, lists, first verification).
    pub first_write_secs: f64,
    pub converged: bool,
    /// Objects whose Ready condition is True, listed after convergence.
    pub ready: usize,
    /// VmHWM at convergence.
    pub peak_rss_mib: f64,
    pub cpu_secs: f64,
    pub api_requests: usize,
    pub api_writes: usize,
    pub provider_requests: usize,
    /// kube-apiserver's CPU over the same time.
    pub apiserver_cpu_secs: f64,
    /// Requests by `verb resource[/subresource]`, most first.
    pub kinds: Vec<(String, usize)>,
}

/// A window after convergence.
#[derive(Clone, Debug, Default)]
pub struct Steady {
    pub window_secs: f64,
    pub api_requests: usize,
    pub api_writes: usize,
    pub provider_requests: usize,
    pub cpu_secs: f64,
    pub apiserver_cpu_secs: f64,
    /// VmRSS at the end of the window.
    pub rss_mib: f64,
    pub kinds: Vec<(String, usize)>,
}

/// A started contender.
pub struct Running {
    child: Child,
    spawned: Instant,
    spawned_wall: SystemTime,
    audit: AuditTail,
    /// Where its audit record stood when it started.
    mark: usize,
    label: String,
    resource: ApiResource,
}

impl Running {
    pub fn start(spec: &Spec, real: &RealApi, log: &Path) -> Running {
        let audit = real.audit_of(&spec.user);
        let mark = audit.count_from(usize::MAX, |_| false).1;
        let log = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let child = Command::new(&spec.program)
            .args(&spec.args)
            .env("KUBECONFIG", &spec.kubeconfig)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", spec.program.display()));
        Running {
            child,
            spawned: Instant::now(),
            spawned_wall: SystemTime::now(),
            audit,
            mark,
            label: spec.label.clone(),
            resource: spec.resource.clone(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (at most `timeout`) until each of the `n` objects had a successful status write
    /// from this process and a list shows all `n` Ready.
    pub async fn converge(
        &mut self,
        real: &RealApi,
        n: usize,
        provider: impl Fn() -> usize,
        timeout: Duration,
    ) -> Converged {
        let provider_before = provider();
        let apiserver_before = real.usage().apiserver_cpu;
        let mut first_write: HashMap<(String, String), SystemTime> = HashMap::new();
        let mut seen = self.mark;
        let mut converged = false;
        let mut ready = 0;
        let mut all_ready = None;
        while self.spawned.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited: {status}", self.label);
            }
            let calls = self.audit.calls_from(seen);
            seen += calls.len();
            for call in calls.iter().filter(|c| self.is_own_status_write(c)) {
                let key = (
                    call.namespace.clone().unwrap_or_default(),
                    call.name.clone().unwrap_or_default(),
                );
                first_write.entry(key).or_insert(call.at);
            }
            if first_write.len() >= n {
                ready = ready_count(real, &self.resource).await;
                if ready >= n {
                    converged = true;
                    all_ready = if all_ready.is_none() {
                        first_write.values().max().copied()
                    } else {
                        Some(SystemTime::now())
                    };
                    break;
                }
                // Written but not all Ready (a failed validation): listed again below.
                all_ready = Some(SystemTime::now());
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let cpu = cpu_of(&self.pid().to_string());
        let peak = proc_kib(self.pid(), "VmHWM");
        let apiserver_cpu = real.usage().apiserver_cpu.saturating_sub(apiserver_before);
        let calls = self.audit.calls_from(self.mark);
        let since_start = |t: SystemTime| t.duration_since(self.spawned_wall).unwrap_or_default().as_secs_f64();
        Converged {
            first_write_secs: first_write.values().min().copied().map_or(0.0, since_start),
            all_ready_secs: all_ready
                .and_then(|t| t.duration_since(self.spawned_wall).ok())
                .unwrap_or_else(|| self.spawned.elapsed())
                .as_secs_f64(),
            converged,
            ready: if converged {
                ready
            } else {
                ready_count(real, &self.resource).await
            },
            peak_rss_mib: mib(peak),
            cpu_secs: cpu.as_secs_f64(),
            api_requests: calls.len(),
            api_writes: calls.iter().filter(|c| c.is_write()).count(),
            provider_requests: provider() - provider_before,
            apiserver_cpu_secs: apiserver_cpu.as_secs_f64(),
            kinds: kinds(&calls),
        }
    }

    fn is_own_status_write(&self, call: &ApiCall) -> bool {
        call.is_status_write() && call.succeeded() && call.resource == self.resource.plural
    }

    /// Lets `settle` pass (the last Events of convergence), then counts over `window`.
    pub async fn steady(
        &self,
        real: &RealApi,
        settle: Duration,
        window: Duration,
        provider: impl Fn() -> usize,
    ) -> Steady {
        tokio::time::sleep(settle).await;
        let from = self.audit.count_from(usize::MAX, |_| false).1;
        let provider_before = provider();
        let cpu_before = cpu_of(&self.pid().to_string());
        let apiserver_before = real.usage().apiserver_cpu;
        let started = Instant::now();
        tokio::time::sleep(window).await;
        let calls = self.audit.calls_from(from);
        Steady {
            window_secs: started.elapsed().as_secs_f64(),
            api_requests: calls.len(),
            api_writes: calls.iter().filter(|c| c.is_write()).count(),
            provider_requests: provider() - provider_before,
            cpu_secs: cpu_of(&self.pid().to_string()).saturating_sub(cpu_before).as_secs_f64(),
            apiserver_cpu_secs: real
                .usage()
                .apiserver_cpu
                .saturating_sub(apiserver_before)
                .as_secs_f64(),
            rss_mib: mib(proc_kib(self.pid(), "VmRSS")),
            kinds: kinds(&calls),
        }
    }

    pub fn stop(mut self) {
        stop(&mut self.child);
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Requests by `verb resource[/subresource]`, most first.
fn kinds(calls: &[ApiCall]) -> Vec<(String, usize)> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for c in calls {
        let resource = match &c.subresource {
            Some(sub) => format!("{}/{sub}", c.resource),
            None => c.resource.clone(),
        };
        *counts.entry(format!("{} {resource}", c.verb)).or_default() += 1;
    }
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

/// Objects of `resource` whose Ready condition is True, listed 500 at a time (as admin).
pub async fn ready_count(real: &RealApi, resource: &ApiResource) -> usize {
    let api: Api<DynamicObject> = Api::all_with(real.client(), resource);
    let mut params = ListParams::default().limit(500);
    let mut ready = HashSet::new();
    loop {
        let page = match api.list(&params).await {
            Ok(page) => page,
            Err(error) => {
                eprintln!("cannot list {}: {error}", resource.plural);
                return ready.len();
            }
        };
        for object in &page.items {
            let is_ready = object.data["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
            if is_ready {
                ready.insert((object.metadata.namespace.clone(), object.metadata.name.clone()));
            }
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return ready.len(),
        }
    }
}
