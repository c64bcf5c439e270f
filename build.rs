//! Compiles src/pg/shim.c (the few lines that need PostgreSQL structs pgrx leaves opaque)
//! against the server headers of the pg_config that pgrx builds for, with the system's C
//! compiler (build-essential, which pgrx needs anyway).

use std::path::PathBuf;
use std::process::Command;

fn pg_config() -> String {
    if let Ok(p) = std::env::var("PGRX_PG_CONFIG_PATH") {
        return p;
    }
    if let Ok(p) = std::env::var("PG_CONFIG") {
        return p;
    }
    let debian = "/usr/lib/postgresql/15/bin/pg_config";
    if std::path::Path::new(debian).exists() {
        return debian.into();
    }
    "pg_config".into()
}

fn main() {
    println!("cargo:rerun-if-changed=src/pg/shim.c");
    println!("cargo:rerun-if-env-changed=PGRX_PG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PG_CONFIG");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let pgc = pg_config();
    let include = Command::new(&pgc).arg("--includedir-server").output().expect("running pg_config");
    assert!(include.status.success(), "{pgc} --includedir-server failed");
    let include = String::from_utf8(include.stdout).unwrap().trim().to_string();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let obj = out.join("shim.o");
    let status = Command::new(&cc)
        .args(["-c", "-O2", "-fPIC", "-Wall", "-Wno-unused-parameter", "-I"])
        .arg(&include)
        .arg("src/pg/shim.c")
        .arg("-o")
        .arg(&obj)
        .status()
        .expect("running the C compiler");
    assert!(status.success(), "compiling src/pg/shim.c failed");
    let lib = out.join("libaudit_ext_shim.a");
    let _ = std::fs::remove_file(&lib);
    let status = Command::new("ar").arg("crs").arg(&lib).arg(&obj).status().expect("running ar");
    assert!(status.success(), "ar failed");
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=audit_ext_shim");
}
