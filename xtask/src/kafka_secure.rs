//! The test broker's secured listeners: SASL_PLAINTEXT (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and SSL with a
//! certificate authority made for the run.
//!
//! The certificates come from Debian's `openssl` command line (EC P-256 keys: each command takes milliseconds,
//! so the broker's start-up time does not change). Kafka 4 reads PEM key and trust stores directly
//! (`ssl.keystore.type=PEM`), so no Java keystore is built. The SCRAM users are written into the cluster's
//! bootstrap metadata by `StorageTool format --add-scram`, so they exist before the broker serves anything; the
//! PLAIN user is in the listener's JAAS line.
//!
//! What the tests get (through the `RKPROXY_TEST_KAFKA_*` variables of `cargo xtask test`): the two listeners'
//! addresses and the folder of PEM files: `ca.pem` (the CA that signed the broker), `client.pem` and
//! `client.key` (a client certificate signed by it, which the broker accepts but does not require), and
//! `other-ca.pem` (an unrelated CA, for the wrong-CA test).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{bail, shell, Result};

/// The PLAIN user of the SASL listener.
pub const PLAIN_USER: &str = "plainuser";
pub const PLAIN_PASSWORD: &str = "plain-secret";
/// The SCRAM user (both SHA-256 and SHA-512 credentials) of the SASL listener.
pub const SCRAM_USER: &str = "scramuser";
pub const SCRAM_PASSWORD: &str = "scram-secret";

/// Ports of the secured listeners; their certificates live in `<broker dir>/certs`.
#[derive(Debug, Clone, Copy)]
pub struct SecureListeners {
    pub sasl_port: u16,
    pub ssl_port: u16,
}

impl SecureListeners {
    /// The lines added to `server.properties`. The PLAINTEXT listener stays the inter-broker one.
    pub fn properties_text(&self, certs: &Path) -> String {
        let scram_login = "org.apache.kafka.common.security.scram.ScramLoginModule required;";
        format!(
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512\n\
             listener.name.sasl_plaintext.plain.sasl.jaas.config=\
             org.apache.kafka.common.security.plain.PlainLoginModule required \
             user_{PLAIN_USER}=\"{PLAIN_PASSWORD}\";\n\
             listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config={scram_login}\n\
             listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config={scram_login}\n\
             ssl.keystore.type=PEM\n\
             ssl.keystore.location={keystore}\n\
             ssl.truststore.type=PEM\n\
             ssl.truststore.location={ca}\n\
             ssl.client.auth=requested\n",
            keystore = certs.join("broker-keystore.pem").display(),
            ca = certs.join("ca.pem").display(),
        )
    }

    /// The `listeners` entries, after the PLAINTEXT one.
    pub fn listeners(&self) -> String {
        format!(
            ",SASL_PLAINTEXT://127.0.0.1:{},SSL://127.0.0.1:{}",
            self.sasl_port, self.ssl_port
        )
    }
}

/// The arguments of `StorageTool format` that create the SCRAM user.
pub fn format_args() -> Vec<String> {
    ["SCRAM-SHA-256", "SCRAM-SHA-512"]
        .into_iter()
        .flat_map(|mechanism| {
            [
                "--add-scram".to_owned(),
                format!("{mechanism}=[name={SCRAM_USER},password={SCRAM_PASSWORD}]"),
            ]
        })
        .collect()
}

/// Makes the run's CA, the broker's key store (key and certificate for 127.0.0.1 and localhost), a client
/// certificate and an unrelated CA, in `certs`.
pub fn make_certificates(certs: &Path) -> Result<()> {
    std::fs::create_dir_all(certs)?;
    new_ca(certs, "ca", "rkproxy Kafka test CA")?;
    new_ca(certs, "other-ca", "rkproxy unrelated CA")?;
    let extensions = certs.join("extensions.cnf");
    std::fs::write(
        &extensions,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
         basicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\n\
         extendedKeyUsage=serverAuth,clientAuth\n",
    )?;
    signed_certificate(certs, "broker", "127.0.0.1", &extensions)?;
    signed_certificate(certs, "client", "rkproxy-test-client", &extensions)?;
    let keystore = [
        std::fs::read_to_string(certs.join("broker.key"))?,
        std::fs::read_to_string(certs.join("broker.pem"))?,
    ]
    .concat();
    std::fs::write(certs.join("broker-keystore.pem"), keystore)?;
    Ok(())
}

/// A self-signed CA: `<name>.pem` and `<name>.key`.
fn new_ca(certs: &Path, name: &str, common_name: &str) -> Result<()> {
    let (cert, key) = pem_paths(certs, name);
    openssl(
        certs,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "7",
            "-subj",
            &format!("/CN={common_name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &key,
            "-out",
            &cert,
        ],
    )
}

/// A key and a certificate signed by `ca`: `<name>.pem` and `<name>.key` (unencrypted PKCS#8).
fn signed_certificate(
    certs: &Path,
    name: &str,
    common_name: &str,
    extensions: &Path,
) -> Result<()> {
    let (cert, key) = pem_paths(certs, name);
    let request = certs.join(format!("{name}.csr")).display().to_string();
    openssl(
        certs,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={common_name}"),
            "-keyout",
            &key,
            "-out",
            &request,
        ],
    )?;
    let (ca_cert, ca_key) = pem_paths(certs, "ca");
    openssl(
        certs,
        &[
            "x509",
            "-req",
            "-in",
            &request,
            "-CA",
            &ca_cert,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "7",
            "-extfile",
            &extensions.display().to_string(),
            "-out",
            &cert,
        ],
    )
}

fn pem_paths(certs: &Path, name: &str) -> (String, String) {
    let path = |suffix: &str| -> PathBuf { certs.join(format!("{name}.{suffix}")) };
    (
        path("pem").display().to_string(),
        path("key").display().to_string(),
    )
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let log = dir.join("openssl.log");
    let mut command = Command::new(shell::require("openssl")?);
    command.args(args).current_dir(dir);
    shell::log_output(&mut command, &log)?;
    let status = command.status()?;
    if !status.success() {
        bail!(
            "openssl {} failed ({status}):\n{}",
            args.first().copied().unwrap_or_default(),
            shell::tail(&log, 10)
        );
    }
    Ok(())
}
