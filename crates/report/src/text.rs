//! Markdown text: escaping and inline code, for the report's text and the notes gathered with
//! it.

/// Text with the characters Markdown would read as markup escaped.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '!' | '~' | '&'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Text as inline code, fenced with more backticks than it contains in a row.
pub fn code(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// Inline code inside a table cell, where `|` must be escaped even in code.
pub fn code_cell(text: &str) -> String {
    code(text).replace('|', "\\|")
}
