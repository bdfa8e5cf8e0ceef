//! Listings that coordinators serve a page at a time (`page_size`, `page_token`,
//! `next_page_token`): the one loop that walks them, for every caller.

use std::future::Future;

/// The most a coordinator returns in one page (`MAX_PAGE_SIZE` of its API).
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A server answered a page with the very token it was asked for as the next one: the listing
/// would never end.
#[derive(Debug, thiserror::Error)]
#[error("the listing does not advance: page token {token:?} came back as the next one")]
pub struct StuckListing {
    /// The token that came back.
    pub token: String,
}

/// A part of a listing and where the rest begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed<T> {
    /// The items, in the listing's order.
    pub items: Vec<T>,
    /// `None` when nothing is left.
    pub next_page_token: Option<String>,
}

/// Fetches pages from `page_token` on (empty for the first page) until `limit` items or the
/// end of the listing. `fetch` gets a page size and a token and returns a page and the token
/// of the next one (empty after the last). A page that names its own token as the next one
/// fails the listing ([`StuckListing`]) rather than looping for ever.
pub async fn collect<T, E, F, Fut>(
    limit: usize,
    page_token: String,
    mut fetch: F,
) -> Result<Listed<T>, E>
where
    E: From<StuckListing>,
    F: FnMut(u32, String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), E>>,
{
    let mut items = Vec::new();
    let mut token = page_token;
    loop {
        let want = u32::try_from(limit.saturating_sub(items.len()))
            .unwrap_or(u32::MAX)
            .min(MAX_PAGE_SIZE);
        let (page, next) = fetch(want, token.clone()).await?;
        if !next.is_empty() && next == token {
            return Err(StuckListing { token }.into());
        }
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

/// Every item of the listing.
pub async fn all<T, E, F, Fut>(fetch: F) -> Result<Vec<T>, E>
where
    E: From<StuckListing>,
    F: FnMut(u32, String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), E>>,
{
    Ok(collect(usize::MAX, String::new(), fetch).await?.items)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Error = Box<dyn std::error::Error + Send + Sync>;
    /// One page as the test server answers it.
    type Page = std::future::Ready<Result<(Vec<u32>, String), Error>>;

    /// A listing of 0..total served `served` at most per page, with tokens as the coordinators
    /// make them (the last item of the page); the page sizes asked for are kept in `asked`.
    fn serve(
        total: u32,
        served: u32,
        asked: &mut Vec<u32>,
    ) -> impl FnMut(u32, String) -> Page + '_ {
        move |size, token| {
            asked.push(size);
            let from = if token.is_empty() {
                0
            } else {
                match token.parse::<u32>() {
                    Ok(last) => last + 1,
                    Err(e) => return std::future::ready(Err(format!("token {token}: {e}").into())),
                }
            };
            let to = (from + size.min(served)).min(total);
            let next = if to < total {
                (to - 1).to_string()
            } else {
                String::new()
            };
            std::future::ready(Ok(((from..to).collect(), next)))
        }
    }

    #[tokio::test]
    async fn pages_are_fetched_until_the_limit_and_the_rest_is_a_token_away() {
        let mut asked = Vec::new();
        let first = collect(5, String::new(), serve(12, 2, &mut asked))
            .await
            .unwrap();
        assert_eq!(first.items, [0, 1, 2, 3, 4]);
        // Never more asked for than is still wanted.
        assert_eq!(asked, [5, 3, 1]);
        let token = first.next_page_token.clone().unwrap();
        let rest = collect(100, token, serve(12, 2, &mut Vec::new()))
            .await
            .unwrap();
        assert_eq!(rest.items, (5..12).collect::<Vec<_>>());
        assert_eq!(rest.next_page_token, None);
    }

    #[tokio::test]
    async fn the_whole_listing_is_asked_for_in_the_largest_pages() {
        let mut asked = Vec::new();
        let every = all(serve(2500, u32::MAX, &mut asked)).await.unwrap();
        assert_eq!(every, (0..2500).collect::<Vec<_>>());
        assert_eq!(asked, [MAX_PAGE_SIZE; 3]);
        let none = all(serve(0, 10, &mut Vec::new())).await.unwrap();
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn a_failed_page_fails_the_listing() {
        let err = collect(10, "x".into(), serve(3, 1, &mut Vec::new()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("token x"), "{err}");
    }

    #[tokio::test]
    async fn a_server_that_hands_back_the_same_token_fails_the_listing() {
        let err = all(|_, token: String| {
            let next = if token.is_empty() { "k1".into() } else { token };
            std::future::ready(Ok::<_, Error>((vec![1], next)))
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("\"k1\" came back"), "{err}");
    }
}
