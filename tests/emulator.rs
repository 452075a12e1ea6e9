//! Tests of the Kubernetes API emulator, driven with the real kube client.

mod support;

use support::emulator::{Emulator, EmulatorOptions};

#[tokio::test]
async fn starts() {
    let emu = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let client = emu.client().await;
    let v = client.apiserver_version().await.unwrap();
    assert_eq!(v.git_version, "v1.34.0");
}
