//! Registries whose id is fixed for the life of the process: from the config or environment
//! (`static`), or from a Kubernetes StatefulSet pod's host name (`kubernetes`). Their leases never
//! expire, so they need no heartbeat and no fence; uniqueness is the operator's (or the
//! StatefulSet's) promise.

use async_trait::async_trait;

use super::{Lease, LeaseRequest, RegistryError, WorkerRegistry};

/// Environment variable that overrides the configured worker id.
pub const FLOE_WORKER_ID: &str = "FLOE_WORKER_ID";
/// MASA's environment variable; like every variable it overrides the config, `FLOE_WORKER_ID` wins.
pub const MASA_WORKER_ID: &str = "WORKER_ID";
/// Environment variable Kubernetes sets to the pod name (`floe-3` for ordinal 3).
pub const HOSTNAME: &str = "HOSTNAME";

/// Where a static worker id came from, so the server can log it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerIdSource {
    /// `FLOE_WORKER_ID`.
    FloeEnv,
    /// MASA's `WORKER_ID`, for drop-in compatibility.
    MasaEnv,
    /// The configuration (file or flags).
    Config,
    /// Nothing set: id 0, which is only safe for a single node (worth a warning).
    Default,
}

/// Resolves a static worker id: `FLOE_WORKER_ID`, else MASA's `WORKER_ID`, else the configured
/// value (the environment overrides the file, as for every key; see `docs/configuration.md`);
/// `None` when none is set. The environment is passed in (`|k| std::env::var(k).ok()`) so this
/// stays testable; a server whose command-line flag must win passes the flag as `configured`
/// and an environment without these two variables.
pub fn resolve_worker_id(
    configured: Option<u32>,
    get: impl Fn(&str) -> Option<String>,
) -> Result<Option<(u32, WorkerIdSource)>, RegistryError> {
    let parse = |var: &str| -> Result<Option<u32>, RegistryError> {
        match get(var) {
            None => Ok(None),
            Some(text) => text.trim().parse::<u32>().map(Some).map_err(|_| {
                RegistryError::Config(format!(
                    "environment variable {var}=`{text}` is not a worker id (a whole number 0..=4294967295); fix or unset it"
                ))
            }),
        }
    };
    if let Some(id) = parse(FLOE_WORKER_ID)? {
        return Ok(Some((id, WorkerIdSource::FloeEnv)));
    }
    if let Some(id) = parse(MASA_WORKER_ID)? {
        return Ok(Some((id, WorkerIdSource::MasaEnv)));
    }
    Ok(configured.map(|id| (id, WorkerIdSource::Config)))
}

/// Checks a fixed id against the pool and builds its never-expiring lease.
fn fixed_lease(id: u32, origin: &str, req: &LeaseRequest) -> Result<Lease, RegistryError> {
    if id >= req.pool_size {
        return Err(RegistryError::Config(format!(
            "worker id {id} ({origin}) does not fit the layout's node field(s): allowed 0..{}",
            req.pool_size
        )));
    }
    Ok(Lease {
        id,
        owner: req.owner.clone(),
        epoch: 0,
        previous_high_water_ms: None,
    })
}

/// A worker id fixed by the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRegistry {
    /// The id, checked against the pool at acquire time (the pool comes from the layout).
    id: u32,
    /// Where the id came from, named in errors.
    source: WorkerIdSource,
}

impl StaticRegistry {
    /// A registry that always hands out `id`.
    pub fn new(id: u32, source: WorkerIdSource) -> StaticRegistry {
        StaticRegistry { id, source }
    }

    /// The registry for [`resolve_worker_id`]'s answer; `None` when no id is set anywhere.
    pub fn from_env(
        configured: Option<u32>,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<StaticRegistry>, RegistryError> {
        Ok(resolve_worker_id(configured, get)?.map(|(id, source)| StaticRegistry::new(id, source)))
    }

    /// The id handed out.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl StaticRegistry {
    /// The lease of the fixed id, or why it does not fit `req`'s pool.
    fn lease(&self, req: &LeaseRequest) -> Result<Lease, RegistryError> {
        let origin = match self.source {
            WorkerIdSource::FloeEnv => format!("from {FLOE_WORKER_ID}"),
            WorkerIdSource::Config => "from the config".to_string(),
            WorkerIdSource::MasaEnv => format!("from {MASA_WORKER_ID}"),
            WorkerIdSource::Default => "the default".to_string(),
        };
        fixed_lease(self.id, &origin, req)
    }
}

/// The worker id of a StatefulSet pod: the ordinal at the end of its host name, plus an offset
/// (so several StatefulSets can share one id space).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesRegistry {
    /// The host name the ordinal came from, named in errors.
    hostname: String,
    /// The pod's ordinal.
    ordinal: u32,
    /// Added to the ordinal.
    offset: u32,
}

impl KubernetesRegistry {
    /// Parses the ordinal from a host name such as `floe-3` or `floe-3.floe.ns.svc.cluster.local`.
    pub fn from_hostname(hostname: &str, offset: u32) -> Result<KubernetesRegistry, RegistryError> {
        let name = hostname.trim();
        let first_label = name.split('.').next().unwrap_or(name);
        let ordinal = first_label
            .rsplit_once('-')
            .map(|(_, n)| n)
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| {
                RegistryError::Config(format!(
                    "host name `{hostname}` does not end in a StatefulSet ordinal such as `floe-3`; the kubernetes registry works only in a StatefulSet pod (use the static, sql or redis registry elsewhere)"
                ))
            })?;
        Ok(KubernetesRegistry {
            hostname: hostname.to_string(),
            ordinal,
            offset,
        })
    }

    /// Reads the host name from `HOSTNAME` in the given environment.
    pub fn from_env(
        offset: u32,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<KubernetesRegistry, RegistryError> {
        let host = get(HOSTNAME).ok_or_else(|| {
            RegistryError::Config(format!(
                "environment variable {HOSTNAME} is not set; Kubernetes sets it to the pod name (`floe-3`)"
            ))
        })?;
        KubernetesRegistry::from_hostname(&host, offset)
    }

    /// The id handed out, `ordinal + offset`, if it fits in `u32`.
    pub fn id(&self) -> Option<u32> {
        self.ordinal.checked_add(self.offset)
    }
}

impl KubernetesRegistry {
    /// The lease of the pod's id, or why it does not fit `req`'s pool.
    fn lease(&self, req: &LeaseRequest) -> Result<Lease, RegistryError> {
        let origin = format!(
            "ordinal {} of host `{}` + offset {}",
            self.ordinal, self.hostname, self.offset
        );
        let id = self.id().ok_or_else(|| {
            RegistryError::Config(format!("worker id {origin} overflows a 32-bit id"))
        })?;
        fixed_lease(id, &origin, req)
    }
}

/// A registry whose id is fixed before any call: nothing to renew, release or fence.
trait Fixed: Send + Sync + std::fmt::Debug {
    /// The lease of the fixed id, or why it does not fit `req`'s pool.
    fn lease(&self, req: &LeaseRequest) -> Result<Lease, RegistryError>;

    /// Where the id comes from, for [`WorkerRegistry::describe`].
    fn describe(&self) -> String;
}

impl Fixed for StaticRegistry {
    fn lease(&self, req: &LeaseRequest) -> Result<Lease, RegistryError> {
        StaticRegistry::lease(self, req)
    }

    fn describe(&self) -> String {
        "static".to_string()
    }
}

impl Fixed for KubernetesRegistry {
    fn lease(&self, req: &LeaseRequest) -> Result<Lease, RegistryError> {
        KubernetesRegistry::lease(self, req)
    }

    fn describe(&self) -> String {
        format!("kubernetes (ordinal of host `{}`)", self.hostname)
    }
}

#[async_trait]
impl<F: Fixed> WorkerRegistry for F {
    async fn acquire(&self, req: &LeaseRequest) -> Result<Lease, RegistryError> {
        self.lease(req)
    }

    fn precheck(&self, req: &LeaseRequest) -> Result<(), RegistryError> {
        self.lease(req).map(|_| ())
    }

    async fn renew(&self, _: &LeaseRequest, _: &Lease, _: u64) -> Result<(), RegistryError> {
        Ok(())
    }

    async fn release(&self, _: &LeaseRequest, _: &Lease, _: u64) -> Result<(), RegistryError> {
        Ok(())
    }

    fn leases_expire(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        Fixed::describe(self)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn req(pool_size: u32) -> LeaseRequest {
        LeaseRequest::new("ns", pool_size, Duration::from_secs(10))
    }

    #[test]
    fn env_precedence_is_floe_then_masa_then_config() {
        let both = env(&[("FLOE_WORKER_ID", "7"), ("WORKER_ID", "9")]);
        assert_eq!(
            resolve_worker_id(Some(3), &both).unwrap(),
            Some((7, WorkerIdSource::FloeEnv))
        );
        let masa = env(&[("WORKER_ID", " 9 ")]);
        assert_eq!(
            resolve_worker_id(Some(3), &masa).unwrap(),
            Some((9, WorkerIdSource::MasaEnv))
        );
        assert_eq!(
            resolve_worker_id(Some(3), env(&[])).unwrap(),
            Some((3, WorkerIdSource::Config))
        );
        assert_eq!(resolve_worker_id(None, env(&[])).unwrap(), None);
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let e = resolve_worker_id(None, env(&[("WORKER_ID", "-1")])).unwrap_err();
        assert!(e.to_string().contains("WORKER_ID=`-1`"), "{e}");
        assert!(!e.is_retryable());
    }

    #[tokio::test]
    async fn static_id_is_checked_against_the_pool() {
        let reg = StaticRegistry::from_env(None, env(&[("FLOE_WORKER_ID", "31")]))
            .unwrap()
            .unwrap();
        let lease = reg.acquire(&req(32)).await.unwrap();
        assert_eq!(lease.id, 31);
        assert!(!reg.leases_expire());
        let e = reg.acquire(&req(16)).await.unwrap_err();
        assert!(
            e.to_string().contains("worker id 31 (from FLOE_WORKER_ID)"),
            "{e}"
        );
        assert!(e.to_string().contains("0..16"), "{e}");
    }

    #[tokio::test]
    async fn kubernetes_ordinal_plus_offset() {
        let reg = KubernetesRegistry::from_hostname("floe-3", 0).unwrap();
        assert_eq!(reg.acquire(&req(8)).await.unwrap().id, 3);
        let reg =
            KubernetesRegistry::from_hostname("id-gen-12.floe.default.svc.cluster.local", 100)
                .unwrap();
        assert_eq!(reg.acquire(&req(1024)).await.unwrap().id, 112);
        let e = reg.acquire(&req(64)).await.unwrap_err();
        assert!(e.to_string().contains("ordinal 12 of host"), "{e}");
        let reg = KubernetesRegistry::from_env(1, env(&[("HOSTNAME", "floe-0")])).unwrap();
        assert_eq!(reg.id(), Some(1));
    }

    #[test]
    fn host_name_without_ordinal_is_a_clear_error() {
        for host in ["floe", "floe-", "floe-x1", "web-1a.svc", ""] {
            let e = KubernetesRegistry::from_hostname(host, 0).unwrap_err();
            assert!(
                e.to_string().contains(&format!("host name `{host}`")),
                "{e}"
            );
        }
        let e = KubernetesRegistry::from_env(0, env(&[])).unwrap_err();
        assert!(e.to_string().contains("HOSTNAME is not set"), "{e}");
    }
}
