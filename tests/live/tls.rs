//! `wss://` signaling through a local TLS-terminating proxy in front of a real livekit-server:
//! with the proxy's private CA the session works; without it, connect fails cleanly and
//! rolls back the platform session.

use std::sync::Arc;

use crate::live_common::{fixture_runtime, Platform};
use menlo_robot_sdk::{connect, ConnectOptions};

/// A TLS proxy on 127.0.0.1:0 forwarding to `target`; returns its port and its CA (DER).
pub(crate) fn start_tls_proxy(rt: &tokio::runtime::Runtime, target: u16) -> (u16, Vec<u8>) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert_der = cert.cert.der().to_vec();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(cert_der.clone())],
                key,
            )
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    (port, cert_der)
}

#[test]
fn wss_works_with_a_private_ca_and_fails_cleanly_without_it() {
    let p = Platform::start();
    let rt = fixture_runtime();
    let server_port = p.livekit.port();
    let (port, ca) = start_tls_proxy(&rt, server_port);
    let wss = format!("wss://127.0.0.1:{port}");

    let untrusted = ConnectOptions::new()
        .worker_names(Vec::<String>::new())
        .livekit_url(wss.clone());
    let err = connect(&p.client, &p.robot_id, untrusted).unwrap_err();
    assert!(
        err.to_string().to_ascii_lowercase().contains("certificate"),
        "{err}"
    );
    assert_eq!(p.client.sessions().get(&p.robot_id).unwrap(), None, "rolled back");

    let runtime = p.runtime(&format!("simplesim:{}", p.robot_id), false, &[]);
    runtime.handle("runtime.tools_list", |_| {
        Ok(r#"[{"name":"wave","description":"wave","input_schema":{"type":"object"}}]"#.to_owned())
    });
    let trusted = ConnectOptions::new()
        .worker_names(Vec::<String>::new())
        .runtime_identity_prefix("simplesim")
        .livekit_url(wss)
        .add_root_certificate(ca);
    let session = connect(&p.client, &p.robot_id, trusted).expect("wss connect with the private CA");
    assert_eq!(session.discover_skills().unwrap()[0].name, "wave");
    session.disconnect().unwrap();
}
