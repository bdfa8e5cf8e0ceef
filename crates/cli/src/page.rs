//! Listings, a page at a time. Every list command takes `--limit` and `--page-token` and
//! prints one JSON shape, `{"<items>": [...], "next_page_token": "…" | null}`, so a script
//! pages through any of them the same way.

use std::future::Future;

pub use mpc_client::paging::Listed;
use serde_json::{json, Value};

use crate::Output;

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

impl PageArgs {
    /// Fetches pages from `--page-token` on until `--limit` items or the end of the listing
    /// ([`mpc_client::paging::collect`]).
    pub async fn collect<T, F, Fut>(&self, fetch: F) -> anyhow::Result<Listed<T>>
    where
        F: FnMut(u32, String) -> Fut,
        Fut: Future<Output = anyhow::Result<(Vec<T>, String)>>,
    {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        mpc_client::paging::collect(limit, self.page_token.clone(), fetch).await
    }
}

/// How a listing is shown.
pub trait Show<T> {
    /// The listing's JSON: its items under `name`, and the token of the rest.
    fn json(&self, name: &str, item: impl Fn(&T) -> Value) -> Value;

    /// Prints the listing: JSON as [`Show::json`]; text as one line per item, or `empty`,
    /// with the flag that shows the rest on stderr.
    fn print(
        &self,
        output: Output,
        name: &str,
        item: impl Fn(&T) -> Value,
        line: impl Fn(&T) -> String,
        empty: &str,
    );

    /// For text output: tells on stderr how to list the rest, if anything is left.
    fn print_more(&self, output: Output);
}

impl<T> Show<T> for Listed<T> {
    fn json(&self, name: &str, item: impl Fn(&T) -> Value) -> Value {
        json!({
            name: self.items.iter().map(item).collect::<Vec<_>>(),
            "next_page_token": self.next_page_token,
        })
    }

    fn print(
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

    fn print_more(&self, output: Output) {
        if let (Output::Text, Some(next)) = (output, &self.next_page_token) {
            eprintln!("more: add --page-token {next}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_flags_reach_the_listing_and_its_json_says_where_the_rest_begins() {
        let page = PageArgs {
            limit: 2,
            page_token: "k9".into(),
        };
        let mut tokens = Vec::new();
        let listed = page
            .collect(|size, token| {
                tokens.push(token);
                std::future::ready(Ok(((0..size).collect(), "k11".to_owned())))
            })
            .await
            .unwrap();
        assert_eq!(tokens, ["k9"]);
        assert_eq!(
            listed.json("n", |n| json!(n)),
            json!({"n": [0, 1], "next_page_token": "k11"})
        );
        let last = Listed::<u32> {
            items: Vec::new(),
            next_page_token: None,
        };
        assert_eq!(last.json("n", |n| json!(n))["next_page_token"], Value::Null);
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
        assert_eq!(ok.page.page_token, "k9");
        assert_eq!(ok.page.limit, 100);
    }
}
