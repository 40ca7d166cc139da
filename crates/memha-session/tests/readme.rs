//! The workspace README's Sessions section shows the snippet this crate's
//! README runs as a doctest: the two must not drift apart.

/// The first fenced Rust block after `after` in `text`.
fn rust_block<'a>(text: &'a str, after: &str) -> &'a str {
    let start = text
        .find(after)
        .unwrap_or_else(|| panic!("no {after:?} in the README"));
    let rest = &text[start..];
    let open = rest.find("```rust\n").expect("a rust block") + "```rust\n".len();
    let len = rest[open..].find("\n```").expect("the block's end");
    &rest[open..open + len]
}

#[test]
fn the_workspace_readme_shows_the_tested_snippet() {
    let workspace = include_str!("../../../README.md");
    let crate_readme = include_str!("../README.md");
    assert_eq!(
        rust_block(workspace, "\n## Sessions\n"),
        rust_block(crate_readme, "# memha-session"),
        "README.md's Sessions snippet differs from crates/memha-session/README.md's"
    );
}
