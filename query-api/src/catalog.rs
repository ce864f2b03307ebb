//! Catalog queries: products with live stock, search with facets, and category pages.
//!
//! Search is Postgres full text (the `search` tsvector of `catalog.products`) with a trigram
//! fallback for typos: a product matches when the text search matches or when the query is
//! word-similar (pg_trgm `<%`, similarity at least 0.6) to its name or brand. Facets are
//! disjunctive: each facet counts the products that match every other filter, so picking a
//! brand still shows how many products the other brands have.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{Postgres, QueryBuilder};

use purser_api_core::ReadContext;
use purser_api_core::errors::{bad_argument, bad_input, db_error};
use purser_api_core::product::{
    CATALOG_PROJECTIONS, PRODUCT_COLUMNS, Product, ProductRow, load_product,
};
use purser_api_core::wire::{
    Int64, PageInfo, decode_cursor, encode_cursor, page_size, parse_global_id,
};

#[derive(SimpleObject)]
pub struct ProductEdge {
    pub cursor: String,
    pub node: Product,
}

/// How search results are ordered.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum ProductSort {
    /// Best match first (needs `query`; without one, the same as NEWEST).
    Relevance,
    /// Most recently created first.
    #[default]
    Newest,
    /// Cheapest first.
    PriceAsc,
    /// Most expensive first.
    PriceDesc,
}

/// What to search for. Prices are in minor units of each product's own currency (catalogs are
/// expected to sell in one currency).
#[derive(InputObject, Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductFilter {
    /// Only this category (exact name, as in `categories`).
    pub category: Option<String>,
    /// Only this brand (exact name, as in the brand facet).
    pub brand: Option<String>,
    /// Price at least this (minor units, inclusive).
    pub min_price: Option<Int64>,
    /// Price below this (minor units, exclusive), so a price facet's bounds can be passed back.
    pub max_price: Option<Int64>,
    /// Only products that can be bought now: not discontinued, and digital or with stock.
    pub in_stock: Option<bool>,
}

/// A validated search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductSearch {
    pub query: Option<String>,
    pub filter: ProductFilter,
    pub sort: ProductSort,
}

/// The longest search text accepted.
pub const MAX_QUERY_CHARS: usize = 200;

/// Upper bounds (minor units, exclusive) of the price facet's ranges; the last range is open.
pub const PRICE_BOUNDS: [i64; 6] = [2_500, 5_000, 10_000, 25_000, 50_000, 100_000];

/// Which filter a facet leaves out when it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dimension {
    Brand,
    Category,
    Price,
}

/// The expression that is true when a product (`p`, joined with stock `s`) can be bought now.
const IN_STOCK_SQL: &str =
    "(not p.discontinued and (p.kind = 'digital' or coalesce(s.on_hand - s.reserved, 0) > 0))";

impl ProductSearch {
    pub fn new(
        query: Option<String>,
        filter: Option<ProductFilter>,
        sort: Option<ProductSort>,
    ) -> async_graphql::Result<ProductSearch> {
        let query = query.map(|q| q.trim().to_owned()).filter(|q| !q.is_empty());
        if query
            .as_ref()
            .is_some_and(|q| q.chars().count() > MAX_QUERY_CHARS)
        {
            return Err(bad_argument(
                "query",
                format!("a search is at most {MAX_QUERY_CHARS} characters"),
            ));
        }
        let filter = filter.unwrap_or_default();
        let (min, max) = (filter.min_price.map(|m| m.0), filter.max_price.map(|m| m.0));
        if min.is_some_and(|m| m < 0) || max.is_some_and(|m| m < 0) {
            return Err(bad_argument("filter", "prices cannot be negative"));
        }
        if let (Some(lo), Some(hi)) = (min, max)
            && lo >= hi
        {
            return Err(bad_argument(
                "filter",
                "`minPrice` must be below `maxPrice`",
            ));
        }
        for (name, v) in [("category", &filter.category), ("brand", &filter.brand)] {
            if v.as_ref().is_some_and(|v| v.chars().count() > 100) {
                return Err(bad_argument(
                    "filter",
                    format!("`{name}` is at most 100 characters"),
                ));
            }
        }
        // Relevance means nothing without a query; fall back to the default order.
        let sort = match (sort.unwrap_or_default(), &query) {
            (ProductSort::Relevance, None) => ProductSort::Newest,
            (s, _) => s,
        };
        Ok(ProductSearch {
            query,
            filter,
            sort,
        })
    }

    /// `from catalog.products p left join catalog.stock s ... where <every filter but one>`.
    fn push_from_where(&self, qb: &mut QueryBuilder<'_, Postgres>, except: Option<Dimension>) {
        qb.push(" from catalog.products p left join catalog.stock s using (sku) where true");
        if let Some(q) = &self.query {
            qb.push(" and (p.search @@ websearch_to_tsquery('english', ");
            qb.push_bind(q.clone());
            qb.push(") or ");
            qb.push_bind(q.clone());
            qb.push(" <% p.name or ");
            qb.push_bind(q.clone());
            qb.push(" <% p.brand)");
        }
        let f = &self.filter;
        if except != Some(Dimension::Category)
            && let Some(c) = &f.category
        {
            qb.push(" and p.category = ");
            qb.push_bind(c.clone());
        }
        if except != Some(Dimension::Brand)
            && let Some(b) = &f.brand
        {
            qb.push(" and p.brand = ");
            qb.push_bind(b.clone());
        }
        if except != Some(Dimension::Price) {
            if let Some(m) = f.min_price {
                qb.push(" and p.price_minor >= ");
                qb.push_bind(m.0);
            }
            if let Some(m) = f.max_price {
                qb.push(" and p.price_minor < ");
                qb.push_bind(m.0);
            }
        }
        match f.in_stock {
            Some(true) => {
                qb.push(format!(" and {IN_STOCK_SQL}"));
            }
            Some(false) => {
                qb.push(format!(" and not {IN_STOCK_SQL}"));
            }
            None => {}
        }
    }

    /// One page of products after `after`, plus whether there are more.
    async fn page(
        &self,
        pool: &sqlx::PgPool,
        limit: i64,
        after: Option<&str>,
    ) -> async_graphql::Result<(Vec<ProductEdge>, bool)> {
        let after = after
            .map(|c| SearchCursor::decode(c, self.sort))
            .transpose()?;
        let mut qb = QueryBuilder::<Postgres>::new(format!("select {PRODUCT_COLUMNS}"));
        self.push_from_where(&mut qb, None);
        match (&after, self.sort) {
            (Some(SearchCursor::Created(ts, sku)), _) => {
                qb.push(" and (p.created_at, p.sku) < (");
                qb.push_bind(*ts);
                qb.push(", ");
                qb.push_bind(sku.clone());
                qb.push(")");
            }
            (Some(SearchCursor::Price(price, sku)), ProductSort::PriceAsc) => {
                qb.push(" and (p.price_minor, p.sku) > (");
                qb.push_bind(*price);
                qb.push(", ");
                qb.push_bind(sku.clone());
                qb.push(")");
            }
            (Some(SearchCursor::Price(price, sku)), _) => {
                qb.push(" and (p.price_minor, p.sku) < (");
                qb.push_bind(*price);
                qb.push(", ");
                qb.push_bind(sku.clone());
                qb.push(")");
            }
            _ => {}
        }
        match (self.sort, &self.query) {
            (ProductSort::Relevance, Some(q)) => {
                qb.push(" order by ts_rank_cd(p.search, websearch_to_tsquery('english', ");
                qb.push_bind(q.clone());
                qb.push(")) + word_similarity(");
                qb.push_bind(q.clone());
                qb.push(", p.name) desc, p.sku");
            }
            (ProductSort::PriceAsc, _) => {
                qb.push(" order by p.price_minor, p.sku");
            }
            (ProductSort::PriceDesc, _) => {
                qb.push(" order by p.price_minor desc, p.sku desc");
            }
            _ => {
                qb.push(" order by p.created_at desc, p.sku desc");
            }
        }
        qb.push(" limit ");
        qb.push_bind(limit + 1);
        let offset = match after {
            Some(SearchCursor::Offset(n)) => n,
            _ => 0,
        };
        if offset > 0 {
            qb.push(" offset ");
            qb.push_bind(offset);
        }
        let rows: Vec<ProductRow> = qb
            .build_query_as()
            .fetch_all(pool)
            .await
            .map_err(db_error)?;
        let has_next = rows.len() as i64 > limit;
        let edges = rows
            .into_iter()
            .take(limit as usize)
            .enumerate()
            .map(|(i, r)| {
                let cursor = match self.sort {
                    ProductSort::Relevance => SearchCursor::Offset(offset + i as i64 + 1),
                    ProductSort::Newest => SearchCursor::Created(r.created_at, r.sku.clone()),
                    ProductSort::PriceAsc | ProductSort::PriceDesc => {
                        SearchCursor::Price(r.price_minor, r.sku.clone())
                    }
                };
                ProductEdge {
                    cursor: cursor.encode(),
                    node: Product(r),
                }
            })
            .collect();
        Ok((edges, has_next))
    }

    async fn total_count(&self, pool: &sqlx::PgPool) -> async_graphql::Result<i64> {
        let mut qb = QueryBuilder::<Postgres>::new("select count(*)");
        self.push_from_where(&mut qb, None);
        qb.build_query_scalar()
            .fetch_one(pool)
            .await
            .map_err(db_error)
    }

    /// Every facet in one statement: three grouped counts, each over the products matching
    /// every filter but its own.
    async fn facets(&self, pool: &sqlx::PgPool) -> async_graphql::Result<ProductFacets> {
        let mut qb = QueryBuilder::<Postgres>::new(
            "select 'brand' as facet, p.brand as value, null::int as bucket, count(*) as n",
        );
        self.push_from_where(&mut qb, Some(Dimension::Brand));
        qb.push(" and p.brand <> '' group by p.brand union all ");
        qb.push("select 'category', p.category, null::int, count(*)");
        self.push_from_where(&mut qb, Some(Dimension::Category));
        qb.push(" and p.category <> '' group by p.category union all ");
        qb.push("select 'price', null, width_bucket(p.price_minor, ");
        qb.push_bind(PRICE_BOUNDS.to_vec());
        qb.push("::bigint[]), count(*)");
        self.push_from_where(&mut qb, Some(Dimension::Price));
        qb.push(" group by 3");
        let rows: Vec<(String, Option<String>, Option<i32>, i64)> = qb
            .build_query_as()
            .fetch_all(pool)
            .await
            .map_err(db_error)?;
        let mut facets = ProductFacets::default();
        for (facet, value, bucket, count) in rows {
            match (facet.as_str(), value, bucket) {
                ("brand", Some(value), _) => facets.brands.push(FacetValue { value, count }),
                ("category", Some(value), _) => facets.categories.push(FacetValue { value, count }),
                ("price", _, Some(b)) => {
                    let b = b as usize;
                    facets.price_ranges.push(PriceRangeFacet {
                        min: Int64(if b == 0 { 0 } else { PRICE_BOUNDS[b - 1] }),
                        max: PRICE_BOUNDS.get(b).copied().map(Int64),
                        count,
                    });
                }
                _ => {}
            }
        }
        // Most common first, then by name, so the order is stable.
        let by_count = |a: &FacetValue, b: &FacetValue| {
            b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value))
        };
        facets.brands.sort_by(by_count);
        facets.categories.sort_by(by_count);
        facets.price_ranges.sort_by_key(|r| r.min.0);
        Ok(facets)
    }

    /// Runs the page query and wraps it into a connection whose counts and facets are
    /// computed only when asked for.
    pub async fn connection(
        self,
        pool: &sqlx::PgPool,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<ProductConnection> {
        let limit = page_size(first, 20, 100)?;
        let (edges, has_next) = self.page(pool, limit, after.as_deref()).await?;
        let page_info = PageInfo {
            has_next_page: has_next,
            has_previous_page: after.is_some(),
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        };
        Ok(ProductConnection {
            edges,
            page_info,
            search: self,
            pool: pool.clone(),
        })
    }
}

/// Where a page ends, per sort order. NEWEST keeps the `[createdAt, sku]` form `products` has
/// always returned, so cursors handed out before search existed still work.
#[derive(Debug, Clone, PartialEq)]
enum SearchCursor {
    Created(DateTime<Utc>, String),
    Price(i64, String),
    /// Relevance scores are not a stable key across pages, so relevance pages by position.
    Offset(i64),
}

impl SearchCursor {
    fn encode(&self) -> String {
        match self {
            SearchCursor::Created(ts, sku) => encode_cursor(&json!([ts.to_rfc3339(), sku])),
            SearchCursor::Price(p, sku) => encode_cursor(&json!(["price", p, sku])),
            SearchCursor::Offset(n) => encode_cursor(&json!(["offset", n])),
        }
    }

    fn decode(raw: &str, sort: ProductSort) -> async_graphql::Result<SearchCursor> {
        let bad = || {
            bad_argument(
                "after",
                "the cursor is not one this API returned for this sort order",
            )
        };
        let k = decode_cursor(raw)?;
        let k = k.as_array().ok_or_else(bad)?;
        let cursor = match k.as_slice() {
            [
                serde_json::Value::String(tag),
                p,
                serde_json::Value::String(sku),
            ] if tag == "price" => SearchCursor::Price(p.as_i64().ok_or_else(bad)?, sku.clone()),
            [serde_json::Value::String(tag), n] if tag == "offset" => {
                SearchCursor::Offset(n.as_i64().filter(|n| *n >= 0).ok_or_else(bad)?)
            }
            [
                serde_json::Value::String(ts),
                serde_json::Value::String(sku),
            ] => {
                let ts = ts.parse::<DateTime<Utc>>().map_err(|_| bad())?;
                SearchCursor::Created(ts, sku.clone())
            }
            _ => return Err(bad()),
        };
        let fits = matches!(
            (&cursor, sort),
            (SearchCursor::Created(..), ProductSort::Newest)
                | (
                    SearchCursor::Price(..),
                    ProductSort::PriceAsc | ProductSort::PriceDesc
                )
                | (SearchCursor::Offset(_), ProductSort::Relevance)
        );
        if fits { Ok(cursor) } else { Err(bad()) }
    }
}

/// A facet value and how many products have it.
#[derive(SimpleObject, Debug, Clone, PartialEq, Eq)]
pub struct FacetValue {
    pub value: String,
    pub count: i64,
}

/// A price range, `min <= price < max`, in minor units; `max` is null for the open top range.
#[derive(SimpleObject, Debug, Clone, PartialEq, Eq)]
pub struct PriceRangeFacet {
    pub min: Int64,
    pub max: Option<Int64>,
    pub count: i64,
}

/// Counts of the search results per brand, category and price range. Each facet applies every
/// filter except its own.
#[derive(SimpleObject, Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductFacets {
    pub brands: Vec<FacetValue>,
    pub categories: Vec<FacetValue>,
    pub price_ranges: Vec<PriceRangeFacet>,
}

/// A page of products, with the search's total and facets.
pub struct ProductConnection {
    pub edges: Vec<ProductEdge>,
    pub page_info: PageInfo,
    search: ProductSearch,
    pool: sqlx::PgPool,
}

#[Object]
impl ProductConnection {
    async fn edges(&self) -> &[ProductEdge] {
        &self.edges
    }
    async fn nodes(&self) -> Vec<Product> {
        self.edges
            .iter()
            .map(|e| Product(e.node.0.clone()))
            .collect()
    }
    async fn page_info(&self) -> &PageInfo {
        &self.page_info
    }
    /// How many products match the search and filters (all pages).
    async fn total_count(&self) -> async_graphql::Result<i64> {
        self.search.total_count(&self.pool).await
    }
    /// Counts per brand, category and price range, for refining the search.
    async fn facets(&self) -> async_graphql::Result<ProductFacets> {
        self.search.facets(&self.pool).await
    }
}

/// A category page: its name, how many products it has, and its products.
pub struct Category {
    pub name: String,
    pub product_count: i64,
    pub available_count: i64,
}

#[Object]
impl Category {
    async fn name(&self) -> &str {
        &self.name
    }
    /// Products in the category, discontinued ones included.
    async fn product_count(&self) -> i64 {
        self.product_count
    }
    /// Products in the category that can be bought now.
    async fn available_count(&self) -> i64 {
        self.available_count
    }
    /// The category's products; the same search as `products`, within this category.
    #[allow(clippy::too_many_arguments)]
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        after: Option<String>,
        query: Option<String>,
        filter: Option<ProductFilter>,
        sort: Option<ProductSort>,
    ) -> async_graphql::Result<ProductConnection> {
        let read = ReadContext::from_ctx(ctx);
        let mut filter = filter.unwrap_or_default();
        filter.category = Some(self.name.clone());
        ProductSearch::new(query, Some(filter), sort)?
            .connection(&read.pool, first, after)
            .await
    }
}

#[derive(Default)]
pub struct CatalogQuery;

#[Object]
impl CatalogQuery {
    /// One product, by SKU or by global id.
    async fn product(
        &self,
        ctx: &Context<'_>,
        sku: Option<String>,
        id: Option<ID>,
        #[graphql(desc = "Wait until the catalog includes this position (from a mutation).")]
        min_position: Option<String>,
    ) -> async_graphql::Result<Option<Product>> {
        let read = ReadContext::from_ctx(ctx);
        let key = match (sku, id) {
            (Some(s), None) => s,
            (None, Some(id)) => parse_global_id("Product", &id)?,
            _ => {
                return Err(bad_input("give exactly one of `sku` or `id`"));
            }
        };
        read.wait_for(ctx, CATALOG_PROJECTIONS, min_position.as_deref())
            .await?;
        Ok(load_product(&read.pool, &key)
            .await
            .map_err(db_error)?
            .map(Product))
    }

    /// Products in pages: all of them newest first, or a search. `query` is full-text with
    /// typo tolerance; `filter` narrows by category, brand, price and stock; `facets` on the
    /// result counts what each refinement would leave.
    #[allow(clippy::too_many_arguments)]
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "Words to search for (at most 200 characters).")] query: Option<String>,
        filter: Option<ProductFilter>,
        #[graphql(desc = "Default: RELEVANCE with a query, NEWEST without.")] sort: Option<
            ProductSort,
        >,
        min_position: Option<String>,
    ) -> async_graphql::Result<ProductConnection> {
        let read = ReadContext::from_ctx(ctx);
        let sort = sort.or(query.as_ref().map(|_| ProductSort::Relevance));
        let search = ProductSearch::new(query, filter, sort)?;
        page_size(first, 20, 100)?;
        read.wait_for(ctx, CATALOG_PROJECTIONS, min_position.as_deref())
            .await?;
        search.connection(&read.pool, first, after).await
    }

    /// Every category with its product counts, by name: the entry points of category pages.
    async fn categories(
        &self,
        ctx: &Context<'_>,
        min_position: Option<String>,
    ) -> async_graphql::Result<Vec<Category>> {
        let read = ReadContext::from_ctx(ctx);
        read.wait_for(ctx, CATALOG_PROJECTIONS, min_position.as_deref())
            .await?;
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
            "select p.category, count(*), count(*) filter (where {IN_STOCK_SQL})
             from catalog.products p left join catalog.stock s using (sku)
             where p.category <> ''
             group by p.category order by p.category"
        ))
        .fetch_all(&read.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(name, product_count, available_count)| Category {
                name,
                product_count,
                available_count,
            })
            .collect())
    }
}
