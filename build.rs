//! Lists the view-table migrations: every `migrations/<dialect>/NNNN_<id>.sql`
//! becomes a revision (ordered by NNNN) of `src/migrations.rs`, so adding a
//! migration is adding its two files. Both dialects must hold the same
//! revisions.

use std::fs;
use std::path::Path;

fn revisions(dialect: &str) -> Vec<(String, String)> {
    let dir = Path::new("migrations").join(dialect);
    let mut out: Vec<(String, String)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .into_string()
                .expect("UTF-8 name")
        })
        .filter(|n| n.ends_with(".sql"))
        .map(|n| {
            let stem = n.trim_end_matches(".sql");
            let (num, id) = stem
                .split_once('_')
                .unwrap_or_else(|| panic!("{dialect}/{n}: expected NNNN_<id>.sql"));
            assert!(
                num.len() == 4 && num.bytes().all(|b| b.is_ascii_digit()),
                "{dialect}/{n}: expected a four-digit number before the id"
            );
            (n.clone(), id.to_owned())
        })
        .collect();
    out.sort();
    out
}

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let sqlite = revisions("sqlite");
    let postgres = revisions("postgres");
    let ids = |r: &[(String, String)]| r.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&sqlite),
        ids(&postgres),
        "migrations/sqlite and migrations/postgres must hold the same revisions"
    );
    let mut code = String::from("&[\n");
    for ((lite, id), (pg, _)) in sqlite.iter().zip(&postgres) {
        code.push_str(&format!(
            "    Revision {{ id: {id:?}, sqlite: include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/migrations/sqlite/{lite}\")), postgres: include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/migrations/postgres/{pg}\")) }},\n"
        ));
    }
    code.push_str("]\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("revisions.rs");
    fs::write(out, code).expect("write revisions.rs");
}
