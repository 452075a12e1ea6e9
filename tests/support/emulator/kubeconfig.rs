//! The kubeconfig file handed to clients: one cluster (server URL + CA data), one user without
//! credentials (the emulator authenticates nobody), one context selecting them.

use std::path::Path;

use super::util::b64_encode;

/// Renders a kubeconfig for `server`, trusting `ca_pem`.
pub fn render(server: &str, ca_pem: &str, namespace: &str) -> String {
    // Written by hand rather than serialised: the format is fixed and tiny, and this keeps
    // the field names exactly as kubectl writes them.
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: emulator
  cluster:
    server: {server}
    certificate-authority-data: {ca}
contexts:
- name: emulator
  context:
    cluster: emulator
    user: emulator-admin
    namespace: {namespace}
current-context: emulator
users:
- name: emulator-admin
  user: {{}}
preferences: {{}}
",
        ca = b64_encode(ca_pem.as_bytes()),
    )
}

/// Writes the kubeconfig to `path` (readable by the owner only, like kubectl does).
pub fn write(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
