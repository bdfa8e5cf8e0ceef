//! Listings, a page at a time. Every list command takes `--limit` and `--page-token` and
//! prints one JSON shape, `{"<items>": [...], "next_page_token": "…" | null}`, so a script
//! pages through any of them the same way.

use std::future::Future;

use serde_json::{json, Value};

use crate::Output;

/// The most a coordinator returns in one page (`MAX_PAGE_SIZE` of its API).
const MAX_PAGE: usize = 1000;

/// Which part of a listing to print.
#[derive(Debug, Clone, clap::Args)]
pub struct PageArgs {
    /// At most this many items; pages are fetched until it is reached.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// Go on where an earlier listing stopped: the `next_page_token` it printed.
    #[arg(long, default_value = "")]
    page_token: String,
}

/// A part of a listing and where the rest begins.
#[derive(Debug)]
pub struct Listed<T> {
    pub items: Vec<T>,
    /// `None` when nothing is left.
    pub next_page_token: Option<String>,
}

impl PageArgs {
    /// Fetches pages from `--page-token` on until `--limit` items or the end of the listing.
    /// `fetch` gets a page size and a token (empty for the first page) and returns a page and
    /// the token of the next one (empty after the last).
    pub async fn collect<T, F, Fut>(&self, mut fetch: F) -> anyhow::Result<Listed<T>>
    where
        F: FnMut(u32, String) -> Fut,
        Fut: Future<Output = anyhow::Result<(Vec<T>, String)>>,
    {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut token = self.page_token.clone();
        loop {
            let want = (limit - items.len()).min(MAX_PAGE);
            let (page, next) = fetch(u32::try_from(want).unwrap_or(u32::MAX), token).await?;
            items.extend(page);
            if next.is_empty() {
                return Ok(Listed {
                    items,
                    next_page_token: None,
                });
            }
            if items.len() >= limit {
                return Ok(Listed {
                    items,
                    next_page_token: Some(next),
                });
            }
            token = next;
        }
    }

    /// The whole listing, for commands that look for one item in it.
    pub fn everything() -> Self {
        Self {
            limit: u32::MAX,
            page_token: String::new(),
        }
    }

    /// The `--page-token` given, or `None` for the first page.
    #[cfg(test)]
    fn token(&self) -> Option<&str> {
        (!self.page_token.is_empty()).then_some(self.page_token.as_str())
    }
}

impl<T> Listed<T> {
    /// The listing's JSON: its items under `name`, and the token of the rest.
    pub fn json(&self, name: &str, item: impl Fn(&T) -> Value) -> Value {
        json!({
            name: self.items.iter().map(item).collect::<Vec<_>>(),
            "next_page_token": self.next_page_token,
        })
    }

    /// Prints the listing: JSON as [`Self::json`]; text as one line per item, or `empty`,
    /// with the flag that shows the rest on stderr.
    pub fn print(
        &self,
        output: Output,
        name: &str,
        item: impl Fn(&T) -> Value,
        line: impl Fn(&T) -> String,
        empty: &str,
    ) {
        crate::commands::print(output, &self.json(name, item), || {
            if self.items.is_empty() {
                empty.to_owned()
            } else {
                self.items.iter().map(line).collect::<Vec<_>>().join("\n")
            }
        });
        self.print_more(output);
    }

    /// For text output: tells on stderr how to list the rest, if anything is left.
    pub fn print_more(&self, output: Output) {
        if let (Output::Text, Some(next)) = (output, &self.next_page_token) {
            eprintln!("more: add --page-token {next}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing of 0..total served `served` at most per page, with tokens as the coordinators
    /// make them (the last item of the page).
    fn serve(
        total: u32,
        served: u32,
    ) -> impl FnMut(u32, String) -> std::future::Ready<anyhow::Result<(Vec<u32>, String)>> {
        move |size, token| {
            let from = if token.is_empty() {
                0
            } else {
                token.parse::<u32>().unwrap() + 1
            };
            let to = (from + size.min(served)).min(total);
            let page: Vec<u32> = (from..to).collect();
            let next = if to < total {
                (to - 1).to_string()
            } else {
                String::new()
            };
            std::future::ready(Ok((page, next)))
        }
    }

    fn args(limit: u32, page_token: &str) -> PageArgs {
        PageArgs {
            limit,
            page_token: page_token.into(),
        }
    }

    #[tokio::test]
    async fn pages_are_fetched_until_the_limit_and_the_rest_is_a_token_away() {
        let first = args(5, "").collect(serve(12, 2)).await.unwrap();
        assert_eq!(first.items, [0, 1, 2, 3, 4]);
        let token = first.next_page_token.clone().unwrap();
        let rest = args(100, &token).collect(serve(12, 2)).await.unwrap();
        assert_eq!(rest.items, (5..12).collect::<Vec<_>>());
        assert_eq!(rest.next_page_token, None);
        assert_eq!(rest.json("n", |n| json!(n))["next_page_token"], Value::Null);
        assert_eq!(first.json("n", |n| json!(n))["n"], json!([0, 1, 2, 3, 4]));
    }

    #[tokio::test]
    async fn a_limit_past_the_end_stops_at_the_end() {
        let all = args(1000, "").collect(serve(3, 1000)).await.unwrap();
        assert_eq!(all.items, [0, 1, 2]);
        assert_eq!(all.next_page_token, None);
        let none = args(10, "").collect(serve(0, 10)).await.unwrap();
        assert!(none.items.is_empty());
    }

    #[test]
    fn a_zero_limit_is_refused_naming_the_flag() {
        #[derive(Debug, clap::Parser)]
        struct Cmd {
            #[command(flatten)]
            page: PageArgs,
        }
        let err = <Cmd as clap::Parser>::try_parse_from(["x", "--limit", "0"]).unwrap_err();
        assert!(err.to_string().contains("--limit"), "{err}");
        let ok = <Cmd as clap::Parser>::try_parse_from(["x", "--page-token", "k9"]).unwrap();
        assert_eq!(ok.page.token(), Some("k9"));
        assert_eq!(ok.page.limit, 100);
    }
}
