//! `report.html`: the Markdown report as one self-contained page, its pictures embedded as
//! `data:` URIs and its style inline, so it can be mailed or archived as one file.

use std::collections::BTreeMap;

use base64::Engine as _;
use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};

/// The page's style sheet.
const STYLE: &str = "\
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:72rem;\
margin:2rem auto;padding:0 1rem;color:#222;line-height:1.45}\
h1{font-size:1.7rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}\
table{border-collapse:collapse;margin:.6rem 0}\
th,td{border:1px solid #ccc;padding:.25rem .55rem;text-align:left;vertical-align:top}\
th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}\
code{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:.88em;\
background:#f1f1f1;padding:0 .2em;border-radius:3px;overflow-wrap:anywhere}\
img{max-width:100%;height:auto;border:1px solid #ddd}";

/// Renders `markdown` as a complete HTML page titled `title`. Every image whose source is a
/// key of `images` (a PNG file name) is embedded as a base64 `data:image/png` URI; raw HTML in
/// the Markdown is shown as text, and links are kept as text, so the page refers to nothing
/// outside itself.
pub fn render(title: &str, markdown: &str, images: &BTreeMap<String, Vec<u8>>) -> String {
    let mut dropped_image = false;
    let parser =
        Parser::new_ext(markdown, Options::ENABLE_TABLES).filter_map(|event| match event {
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => match images.get(dest_url.as_ref()) {
                Some(png) => Some(Event::Start(Tag::Image {
                    link_type,
                    dest_url: CowStr::from(format!(
                        "data:image/png;base64,{}",
                        base64::engine::general_purpose::STANDARD.encode(png)
                    )),
                    title,
                    id,
                })),
                // A picture that is not part of the report is not fetched from elsewhere: its
                // alternative text stays, as text.
                None => {
                    dropped_image = true;
                    None
                }
            },
            Event::End(TagEnd::Image) if dropped_image => {
                dropped_image = false;
                None
            }
            Event::Start(Tag::Link { .. }) | Event::End(TagEnd::Link) => None,
            Event::Html(text) | Event::InlineHtml(text) => Some(Event::Text(text)),
            other => Some(other),
        });
    let mut body = String::with_capacity(markdown.len() * 2);
    pulldown_cmark::html::push_html(&mut body, parser);
    let title_html = escape_html(title);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title_html}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )
}

/// `text` with `&`, `<`, `>` and `"` escaped for HTML.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_images_and_refers_to_nothing_outside() {
        let md = "# T <x>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![c](c.png) ![far](http://example.com/x.png)\n\n\
                  [a link](https://example.com) <script>alert(1)</script>\n";
        let images = BTreeMap::from([("c.png".to_string(), vec![1u8, 2, 3])]);
        let html = render("A & B", md, &images);
        assert!(html.contains("<title>A &amp; B</title>"));
        assert!(html.contains("<table>") && html.contains("<td>2</td>"));
        assert!(
            html.contains("src=\"data:image/png;base64,AQID\""),
            "{html}"
        );
        assert!(!html.contains("example.com"), "{html}");
        assert!(html.contains("far"), "the alternative text stays");
        assert_eq!(html.matches("<img").count(), 1);
        assert!(!html.contains("href"));
        assert!(html.contains("a link"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
    }
}
