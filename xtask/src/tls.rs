//! TLS test servers: certificates made for the run with Debian's `openssl` command (nothing is committed, no
//! crate is added to xtask), a TLS-only redis-server and a TLS-only Redis Cluster (three masters, no replicas,
//! the cluster bus over TLS too).
//!
//! The files, in `<run dir>/tls/` (the tests read them through `RKPROXY_TEST_TLS_DIR`):
//! - `ca.crt`/`ca.key`: the test CA; `server.crt`/`server.key`: signed by it for `localhost` and 127.0.0.1
//!   (the Redis servers and rkproxy's TLS listener in the tests); `client.crt`/`client.key`: signed by it,
//!   subject `O=rkproxy-test, CN=tenant-client` (mutual TLS, and rkproxy's certificate towards the cluster,
//!   whose nodes require one);
//! - `expired.crt`/`expired.key`: signed by the test CA, valid in January 2020 only;
//! - `revoked-client.crt`/`revoked-client.key`: signed by the test CA, subject
//!   `O=rkproxy-test, CN=revoked-client`; `revoked-server.crt`/`revoked-server.key`: signed by the test CA for
//!   `localhost` and 127.0.0.1; `ca-empty.crl`: the test CA's revocation list before they were revoked
//!   (nothing revoked), `ca.crl`: the list after (it names both);
//! - `other-ca.crt`, `other-server.crt`/`other-server.key`: a second CA and a server certificate of its own,
//!   for "a client that trusts the wrong CA".

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{bail, shell, signals, Result};

/// What makes the certificates.
pub const OPENSSL: shell::Tool = shell::Tool {
    binary: "openssl",
    package: "openssl",
};

/// The subject of `client.crt`, which the tests bind a tenant to.
pub const CLIENT_SUBJECT: &str = "/O=rkproxy-test/CN=tenant-client";

/// Extensions of the end-entity certificates: both server and client use (the cluster bus uses one
/// certificate for both), for `localhost` and 127.0.0.1.
const LEAF_EXTENSIONS: &str = "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
    basicConstraints=CA:FALSE\n\
    keyUsage=digitalSignature,keyEncipherment\n\
    extendedKeyUsage=serverAuth,clientAuth\n";

/// Nodes of the TLS cluster: three masters, no replicas.
pub const TLS_CLUSTER_NODES: usize = 3;

/// The certificate folder of a run.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub dir: PathBuf,
}

impl TlsFiles {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Makes every file listed in the module documentation in `dir`.
    pub fn generate(dir: &Path) -> Result<TlsFiles> {
        std::fs::create_dir_all(dir)?;
        let files = TlsFiles {
            dir: dir.to_path_buf(),
        };
        std::fs::write(files.path("leaf.ext"), LEAF_EXTENSIONS)?;
        files.self_signed_ca("ca", "/CN=rkproxy test CA")?;
        files.signed_leaf("server", "/CN=localhost", "ca", 2)?;
        files.signed_leaf("client", CLIENT_SUBJECT, "ca", 3)?;
        files.expired_leaf()?;
        files.revoked_leaf()?;
        files.self_signed_ca("other-ca", "/CN=some other CA")?;
        files.signed_leaf("other-server", "/CN=localhost", "other-ca", 4)?;
        Ok(files)
    }

    fn self_signed_ca(&self, name: &str, subject: &str) -> Result<()> {
        let (key, cert) = (
            self.path(&format!("{name}.key")),
            self.path(&format!("{name}.crt")),
        );
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
            "-subj",
            subject,
            "-keyout",
            &text(&key),
            "-out",
            &text(&cert),
        ])
    }

    /// A key and a certificate request for `name`, with the leaf's names in the request too.
    fn request(&self, name: &str, subject: &str) -> Result<PathBuf> {
        let (key, request) = (
            self.path(&format!("{name}.key")),
            self.path(&format!("{name}.csr")),
        );
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            subject,
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            &text(&key),
            "-out",
            &text(&request),
        ])?;
        Ok(request)
    }

    fn signed_leaf(&self, name: &str, subject: &str, ca: &str, serial: u32) -> Result<()> {
        let request = self.request(name, subject)?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &text(&request),
            "-CA",
            &text(&self.path(&format!("{ca}.crt"))),
            "-CAkey",
            &text(&self.path(&format!("{ca}.key"))),
            "-set_serial",
            &serial.to_string(),
            "-days",
            "30",
            "-extfile",
            &text(&self.path("leaf.ext")),
            "-out",
            &text(&self.path(&format!("{name}.crt"))),
        ])
    }

    /// `openssl x509` cannot date a certificate in the past; `openssl ca` can, with a minimal CA config.
    fn expired_leaf(&self) -> Result<()> {
        let request = self.request("expired", "/CN=localhost")?;
        let database = self.path("ca-index.txt");
        std::fs::write(&database, "")?;
        std::fs::write(self.path("ca-serial"), "10\n")?;
        let config = format!(
            "[ ca ]\ndefault_ca = test_ca\n[ test_ca ]\ndatabase = {database}\nnew_certs_dir = {dir}\n\
             serial = {serial}\ncrlnumber = {crlnumber}\ndefault_crl_days = 30\ndefault_md = sha256\n\
             policy = any_subject\ncopy_extensions = copy\nunique_subject = no\n\
             [ any_subject ]\ncommonName = supplied\n",
            database = text(&database),
            dir = text(&self.dir),
            serial = text(&self.path("ca-serial")),
            crlnumber = text(&self.path("ca-crlnumber")),
        );
        std::fs::write(self.path("ca-crlnumber"), "01\n")?;
        std::fs::write(self.path("ca.cnf"), config)?;
        self.openssl_ca(&[
            "-batch",
            "-notext",
            "-in",
            &text(&request),
            "-out",
            &text(&self.path("expired.crt")),
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200102000000Z",
        ])
    }

    /// `revoked-client.crt` and `revoked-server.crt`, and the test CA's revocation lists before and after
    /// revoking them (`ca.cnf`, written by [`Self::expired_leaf`], holds the CA's database).
    fn revoked_leaf(&self) -> Result<()> {
        self.signed_leaf(
            "revoked-client",
            "/O=rkproxy-test/CN=revoked-client",
            "ca",
            5,
        )?;
        self.signed_leaf("revoked-server", "/CN=localhost", "ca", 6)?;
        self.revocation_list("ca-empty.crl")?;
        for revoked in ["revoked-client.crt", "revoked-server.crt"] {
            self.openssl_ca(&["-revoke", &text(&self.path(revoked))])?;
        }
        self.revocation_list("ca.crl")
    }

    /// The test CA's revocation list as its database has it now, into `name`.
    fn revocation_list(&self, name: &str) -> Result<()> {
        self.openssl_ca(&["-gencrl", "-out", &text(&self.path(name))])
    }

    /// `openssl ca` as the test CA (`ca.crt`, `ca.key`, the database `ca.cnf` names) with `args`.
    fn openssl_ca(&self, args: &[&str]) -> Result<()> {
        let (config, cert, key) = (
            text(&self.path("ca.cnf")),
            text(&self.path("ca.crt")),
            text(&self.path("ca.key")),
        );
        let mut all = vec!["ca", "-config", &config, "-cert", &cert, "-keyfile", &key];
        all.extend_from_slice(args);
        openssl(&all)
    }

    /// The redis-server settings of a TLS-only server with `server.crt`. `clients_need_certificates`:
    /// clients must present a certificate of the test CA (`tls-auth-clients yes`).
    pub fn redis_config(&self, port: u16, clients_need_certificates: bool) -> String {
        format!(
            "port 0\ntls-port {port}\ntls-cert-file {cert}\ntls-key-file {key}\ntls-ca-cert-file {ca}\n\
             tls-auth-clients {auth}\n",
            cert = quoted(&self.path("server.crt")),
            key = quoted(&self.path("server.key")),
            ca = quoted(&self.path("ca.crt")),
            auth = if clients_need_certificates { "yes" } else { "no" },
        )
    }

    /// `redis-cli` with the TLS options to reach the test servers (with the client certificate).
    pub fn redis_cli(&self) -> Result<Command> {
        let mut command = Command::new(shell::require("redis-cli")?);
        command
            .arg("--tls")
            .arg("--cacert")
            .arg(self.path("ca.crt"))
            .arg("--cert")
            .arg(self.path("client.crt"))
            .arg("--key")
            .arg(self.path("client.key"))
            .stdin(Stdio::null());
        Ok(command)
    }

    /// What `redis-cli ... -p port args` prints, or why it failed.
    pub fn redis_cli_output(&self, addr: SocketAddr, args: &[&str]) -> Result<String> {
        let output = self
            .redis_cli()?
            .arg("-h")
            .arg(addr.ip().to_string())
            .arg("-p")
            .arg(addr.port().to_string())
            .args(args)
            .stderr(Stdio::piped())
            .output()?;
        if !output.status.success() {
            bail!(
                "redis-cli {args:?} on {addr} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Forms a cluster of `nodes` (masters only) over TLS and waits until every node sees it whole.
    pub fn create_cluster(&self, nodes: &[SocketAddr], timeout: Duration) -> Result<()> {
        let addresses: Vec<String> = nodes.iter().map(SocketAddr::to_string).collect();
        let output = self
            .redis_cli()?
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()?;
        if !output.status.success() {
            bail!(
                "redis-cli --tls --cluster create failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let deadline = Instant::now() + timeout;
        'wait: loop {
            for node in nodes {
                let info = self
                    .redis_cli_output(*node, &["CLUSTER", "INFO"])
                    .unwrap_or_default();
                let whole = info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_ok:16384")
                    && info.contains(&format!("cluster_known_nodes:{}", nodes.len()));
                if !whole {
                    if Instant::now() > deadline {
                        bail!("TLS cluster not ready after {timeout:?}: {node} says {info}");
                    }
                    signals::sleep(Duration::from_millis(100))?;
                    continue 'wait;
                }
            }
            return Ok(());
        }
    }
}

fn openssl(args: &[&str]) -> Result<()> {
    let output = Command::new(shell::require("openssl")?)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()?;
    if !output.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

fn quoted(path: &Path) -> String {
    format!(
        "\"{}\"",
        text(path).replace('\\', "\\\\").replace('"', "\\\"")
    )
}
