//! Product: the catalog entry of one SKU, stream `product-<SKU>`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Aggregate, DomainError, Event, Money, Sku, ValueError, bounded_text};

/// Where the license keys of a digital product come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenseSource {
    /// Keys loaded into the SKU's license pool by an admin, each issued at most once.
    Pool,
    /// Keys generated on issue: the license payload signed with Ed25519, verifiable offline.
    Signed,
}

/// What a digital product grants. Orders copy these terms at placing time, so a later change of
/// the product never changes what a customer already bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DigitalTerms {
    pub license: LicenseSource,
    pub seats: u32,
    pub validity_days: Option<u32>,
}

impl DigitalTerms {
    pub const MAX_SEATS: u32 = 10_000;
    pub const MAX_VALIDITY_DAYS: u32 = 36_500;

    /// Checks the terms: at least one seat, and a validity (when limited) of at least one day.
    pub fn validate(&self) -> Result<(), ValueError> {
        if self.seats == 0 || self.seats > Self::MAX_SEATS {
            return Err(ValueError::new("seats", format!("must be 1 to {}", Self::MAX_SEATS)));
        }
        if let Some(days) = self.validity_days
            && (days == 0 || days > Self::MAX_VALIDITY_DAYS)
        {
            let msg = format!("must be 1 to {} days", Self::MAX_VALIDITY_DAYS);
            return Err(ValueError::new("validity_days", msg));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProductKind {
    #[default]
    Physical,
    /// A software product delivered as a license key.
    Digital { license: LicenseSource, seats: u32, validity_days: Option<u32> },
}

impl ProductKind {
    pub fn digital(terms: DigitalTerms) -> ProductKind {
        ProductKind::Digital {
            license: terms.license,
            seats: terms.seats,
            validity_days: terms.validity_days,
        }
    }

    /// The license terms of a digital product; `None` for a physical one.
    pub fn digital_terms(&self) -> Option<DigitalTerms> {
        match *self {
            ProductKind::Physical => None,
            ProductKind::Digital { license, seats, validity_days } => {
                Some(DigitalTerms { license, seats, validity_days })
            }
        }
    }
}

/// The free-text part of a product, validated in one place for the API layer and the aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductDetails {
    pub name: String,
    pub description: String,
    pub brand: String,
    pub category: String,
}

impl ProductDetails {
    pub const NAME_MAX: usize = 200;
    pub const DESCRIPTION_MAX: usize = 5000;
    pub const BRAND_MAX: usize = 100;
    pub const CATEGORY_MAX: usize = 100;

    /// Trims and bounds every field; only the name is required.
    pub fn parse(
        name: &str,
        description: &str,
        brand: &str,
        category: &str,
    ) -> Result<ProductDetails, ValueError> {
        Ok(ProductDetails {
            name: Self::parse_name(name)?,
            description: Self::parse_description(description)?,
            brand: Self::parse_brand(brand)?,
            category: Self::parse_category(category)?,
        })
    }

    pub fn parse_name(raw: &str) -> Result<String, ValueError> {
        bounded_text("name", raw, Self::NAME_MAX, true)
    }

    pub fn parse_description(raw: &str) -> Result<String, ValueError> {
        bounded_text("description", raw, Self::DESCRIPTION_MAX, false)
    }

    pub fn parse_brand(raw: &str) -> Result<String, ValueError> {
        bounded_text("brand", raw, Self::BRAND_MAX, false)
    }

    pub fn parse_category(raw: &str) -> Result<String, ValueError> {
        bounded_text("category", raw, Self::CATEGORY_MAX, false)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProductState {
    pub exists: bool,
    pub sku: Option<Sku>,
    pub name: String,
    pub description: String,
    pub brand: String,
    pub category: String,
    pub kind: ProductKind,
    pub price: Option<Money>,
    pub discontinued: bool,
}

#[derive(Debug, Clone, PartialEq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ProductCommand {
    Create {
        sku: Sku,
        name: String,
        description: String,
        brand: String,
        category: String,
        kind: ProductKind,
        price: Money,
        now: DateTime<Utc>,
    },
    UpdateDetails {
        name: Option<String>,
        description: Option<String>,
        brand: Option<String>,
        category: Option<String>,
        now: DateTime<Utc>,
    },
    ChangePrice {
        price: Money,
        now: DateTime<Utc>,
    },
    Discontinue {
        reason: String,
        now: DateTime<Utc>,
    },
    Reactivate {
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ProductEvent {
    ProductCreated {
        sku: Sku,
        name: String,
        description: String,
        brand: String,
        category: String,
        kind: ProductKind,
        price: Money,
        at: DateTime<Utc>,
    },
    /// Only the fields that changed are `Some`.
    ProductDetailsUpdated {
        sku: Sku,
        name: Option<String>,
        description: Option<String>,
        brand: Option<String>,
        category: Option<String>,
        at: DateTime<Utc>,
    },
    ProductPriceChanged {
        sku: Sku,
        old: Money,
        new: Money,
        at: DateTime<Utc>,
    },
    ProductDiscontinued {
        sku: Sku,
        reason: String,
        at: DateTime<Utc>,
    },
    ProductReactivated {
        sku: Sku,
        at: DateTime<Utc>,
    },
}

impl Event for ProductEvent {
    event_names!(
        ProductCreated,
        ProductDetailsUpdated,
        ProductPriceChanged,
        ProductDiscontinued,
        ProductReactivated,
    );
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProductError {
    #[error("a product with this SKU already exists")]
    AlreadyExists,
    #[error("no product with this SKU")]
    NotFound,
    #[error("a product keeps its currency: it is priced in {from}, not {to}")]
    CurrencyChange { from: crate::Currency, to: crate::Currency },
    #[error("a price must not be negative")]
    NegativePrice,
    #[error("a price may be at most {} minor units", crate::Money::MAX_MINOR)]
    PriceTooLarge,
    #[error("the product is already discontinued")]
    AlreadyDiscontinued,
    #[error("the product is not discontinued")]
    NotDiscontinued,
    #[error(transparent)]
    Invalid(#[from] ValueError),
}

impl DomainError for ProductError {
    fn code(&self) -> &'static str {
        match self {
            Self::AlreadyExists => "PRODUCT_ALREADY_EXISTS",
            Self::NotFound => "PRODUCT_NOT_FOUND",
            Self::CurrencyChange { .. } => "PRICE_CURRENCY_CHANGE",
            Self::NegativePrice => "NEGATIVE_PRICE",
            Self::PriceTooLarge => "AMOUNT_TOO_LARGE",
            Self::AlreadyDiscontinued => "ALREADY_DISCONTINUED",
            Self::NotDiscontinued => "NOT_DISCONTINUED",
            Self::Invalid(_) => "INVALID_INPUT",
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::CurrencyChange { .. } | Self::NegativePrice | Self::PriceTooLarge => {
                Some("price")
            }
            Self::Invalid(e) => Some(e.field),
            _ => None,
        }
    }
}

pub struct Product;

impl Product {
    fn check_price(price: crate::Money) -> Result<(), ProductError> {
        if price.minor < 0 {
            return Err(ProductError::NegativePrice);
        }
        if !price.is_bounded() {
            return Err(ProductError::PriceTooLarge);
        }
        Ok(())
    }
}

impl Aggregate for Product {
    const CATEGORY: &'static str = "product";
    type Id = Sku;
    type State = ProductState;
    type Command = ProductCommand;
    type Event = ProductEvent;
    type Error = ProductError;

    fn decide(
        state: &ProductState,
        command: ProductCommand,
    ) -> Result<Vec<ProductEvent>, ProductError> {
        use ProductEvent::*;
        // Every command but Create needs an existing product.
        let existing = || match (&state.sku, state.price) {
            (Some(sku), Some(price)) => Ok((sku.clone(), price)),
            _ => Err(ProductError::NotFound),
        };
        match command {
            ProductCommand::Create {
                sku,
                name,
                description,
                brand,
                category,
                kind,
                price,
                now,
            } => {
                if state.exists {
                    return Err(ProductError::AlreadyExists);
                }
                Self::check_price(price)?;
                let details = ProductDetails::parse(&name, &description, &brand, &category)?;
                if let Some(terms) = kind.digital_terms() {
                    terms.validate()?;
                }
                Ok(vec![ProductCreated {
                    sku,
                    name: details.name,
                    description: details.description,
                    brand: details.brand,
                    category: details.category,
                    kind,
                    price,
                    at: now,
                }])
            }
            ProductCommand::UpdateDetails { name, description, brand, category, now } => {
                let (sku, _) = existing()?;
                // Each field is validated, then kept only if it differs from the current value,
                // so the event records exactly what changed.
                let changed = |new: Option<String>,
                               parse: fn(&str) -> Result<String, ValueError>,
                               old: &str|
                 -> Result<Option<String>, ValueError> {
                    match new {
                        Some(raw) => parse(&raw).map(|v| (v != old).then_some(v)),
                        None => Ok(None),
                    }
                };
                let name = changed(name, ProductDetails::parse_name, &state.name)?;
                let description =
                    changed(description, ProductDetails::parse_description, &state.description)?;
                let brand = changed(brand, ProductDetails::parse_brand, &state.brand)?;
                let category = changed(category, ProductDetails::parse_category, &state.category)?;
                if name.is_none() && description.is_none() && brand.is_none() && category.is_none()
                {
                    return Ok(vec![]);
                }
                Ok(vec![ProductDetailsUpdated { sku, name, description, brand, category, at: now }])
            }
            ProductCommand::ChangePrice { price, now } => {
                let (sku, current_price) = existing()?;
                if price.currency != current_price.currency {
                    return Err(ProductError::CurrencyChange {
                        from: current_price.currency,
                        to: price.currency,
                    });
                }
                Self::check_price(price)?;
                if price == current_price {
                    return Ok(vec![]);
                }
                Ok(vec![ProductPriceChanged { sku, old: current_price, new: price, at: now }])
            }
            ProductCommand::Discontinue { reason, now } => {
                let (sku, _) = existing()?;
                if state.discontinued {
                    return Err(ProductError::AlreadyDiscontinued);
                }
                let reason = bounded_text("reason", &reason, 500, false)?;
                Ok(vec![ProductDiscontinued { sku, reason, at: now }])
            }
            ProductCommand::Reactivate { now } => {
                let (sku, _) = existing()?;
                if !state.discontinued {
                    return Err(ProductError::NotDiscontinued);
                }
                Ok(vec![ProductReactivated { sku, at: now }])
            }
        }
    }

    fn evolve(mut state: ProductState, event: &ProductEvent) -> ProductState {
        match event {
            ProductEvent::ProductCreated {
                sku,
                name,
                description,
                brand,
                category,
                kind,
                price,
                ..
            } => {
                state = ProductState {
                    exists: true,
                    sku: Some(sku.clone()),
                    name: name.clone(),
                    description: description.clone(),
                    brand: brand.clone(),
                    category: category.clone(),
                    kind: kind.clone(),
                    price: Some(*price),
                    discontinued: false,
                };
            }
            ProductEvent::ProductDetailsUpdated { name, description, brand, category, .. } => {
                for (new, old) in [
                    (name, &mut state.name),
                    (description, &mut state.description),
                    (brand, &mut state.brand),
                    (category, &mut state.category),
                ] {
                    if let Some(new) = new {
                        old.clone_from(new);
                    }
                }
            }
            ProductEvent::ProductPriceChanged { new, .. } => state.price = Some(*new),
            ProductEvent::ProductDiscontinued { .. } => state.discontinued = true,
            ProductEvent::ProductReactivated { .. } => state.discontinued = false,
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::ProductEvent::*;
    use super::*;
    use crate::aggregate::testing::given;
    use crate::test_support::{eur, sku, t, usd};

    fn created() -> ProductEvent {
        ProductCreated {
            sku: sku("LAP-13"),
            name: "Laptop 13".into(),
            description: "A small laptop".into(),
            brand: "Acme".into(),
            category: "Computers".into(),
            kind: ProductKind::Physical,
            price: usd(99_900),
            at: t(0),
        }
    }

    fn create_cmd(kind: ProductKind, price: Money) -> ProductCommand {
        ProductCommand::Create {
            sku: sku("LAP-13"),
            name: "  Laptop 13 ".into(),
            description: "A small laptop".into(),
            brand: "Acme".into(),
            category: "Computers".into(),
            kind,
            price,
            now: t(0),
        }
    }

    fn update(name: Option<&str>, brand: Option<&str>) -> ProductCommand {
        ProductCommand::UpdateDetails {
            name: name.map(Into::into),
            description: None,
            brand: brand.map(Into::into),
            category: None,
            now: t(5),
        }
    }

    #[test]
    fn create_trims_and_records_everything() {
        given::<Product>([]).when(create_cmd(ProductKind::Physical, usd(99_900))).then([created()]);
    }

    #[test]
    fn create_rejects_duplicates_negative_prices_and_bad_input() {
        given::<Product>([created()])
            .when(create_cmd(ProductKind::Physical, usd(1)))
            .then_error("PRODUCT_ALREADY_EXISTS");
        given::<Product>([])
            .when(create_cmd(ProductKind::Physical, usd(-1)))
            .then_error("NEGATIVE_PRICE");
        let no_seats =
            ProductKind::Digital { license: LicenseSource::Pool, seats: 0, validity_days: None };
        let err = given::<Product>([]).when(create_cmd(no_seats, usd(1))).result().unwrap_err();
        assert_eq!((err.code(), err.field()), ("INVALID_INPUT", Some("seats")));
        let mut long_name = create_cmd(ProductKind::Physical, usd(1));
        if let ProductCommand::Create { name, .. } = &mut long_name {
            *name = "x".repeat(201);
        }
        given::<Product>([]).when(long_name).then_error("INVALID_INPUT");
    }

    #[test]
    fn digital_products_keep_their_terms() {
        let kind = ProductKind::Digital {
            license: LicenseSource::Signed,
            seats: 3,
            validity_days: Some(365),
        };
        let events = given::<Product>([]).when(create_cmd(kind.clone(), usd(4_999))).result();
        let state = Product::fold(events.as_ref().unwrap());
        let terms = state.kind.digital_terms().unwrap();
        assert_eq!(terms.seats, 3);
        assert_eq!(ProductKind::digital(terms), kind);
        let json = serde_json::to_value(&kind).unwrap();
        assert_eq!(json["type"], "digital");
        assert_eq!(json["license"], "signed");
    }

    #[test]
    fn update_records_only_changed_fields() {
        given::<Product>([created()]).when(update(Some("Laptop 13 Pro"), Some("Acme"))).then([
            ProductDetailsUpdated {
                sku: sku("LAP-13"),
                name: Some("Laptop 13 Pro".into()),
                description: None,
                brand: None,
                category: None,
                at: t(5),
            },
        ]);
        given::<Product>([created()]).when(update(Some("Laptop 13"), None)).then([]);
        given::<Product>([]).when(update(Some("x"), None)).then_error("PRODUCT_NOT_FOUND");
        given::<Product>([created()]).when(update(Some(""), None)).then_error("INVALID_INPUT");
    }

    #[test]
    fn price_changes_keep_the_currency() {
        let change = |price| ProductCommand::ChangePrice { price, now: t(9) };
        given::<Product>([created()]).when(change(usd(89_900))).then([ProductPriceChanged {
            sku: sku("LAP-13"),
            old: usd(99_900),
            new: usd(89_900),
            at: t(9),
        }]);
        given::<Product>([created()]).when(change(usd(99_900))).then([]);
        given::<Product>([created()]).when(change(eur(1))).then_error("PRICE_CURRENCY_CHANGE");
        given::<Product>([created()]).when(change(usd(-5))).then_error("NEGATIVE_PRICE");
        given::<Product>([]).when(change(usd(1))).then_error("PRODUCT_NOT_FOUND");
    }

    #[test]
    fn discontinue_and_reactivate() {
        let discontinued =
            ProductDiscontinued { sku: sku("LAP-13"), reason: "end of line".into(), at: t(1) };
        given::<Product>([created()])
            .when(ProductCommand::Discontinue { reason: "end of line".into(), now: t(1) })
            .then([discontinued.clone()]);
        given::<Product>([created(), discontinued.clone()])
            .when(ProductCommand::Discontinue { reason: "again".into(), now: t(2) })
            .then_error("ALREADY_DISCONTINUED");
        given::<Product>([created(), discontinued.clone()])
            .when(ProductCommand::Reactivate { now: t(3) })
            .then([ProductReactivated { sku: sku("LAP-13"), at: t(3) }]);
        given::<Product>([created()])
            .when(ProductCommand::Reactivate { now: t(3) })
            .then_error("NOT_DISCONTINUED");
        given::<Product>([])
            .when(ProductCommand::Reactivate { now: t(3) })
            .then_error("PRODUCT_NOT_FOUND");
    }

    #[test]
    fn details_parse_in_one_place() {
        let d = ProductDetails::parse(" Mouse ", "", "", "Accessories").unwrap();
        assert_eq!(d.name, "Mouse");
        assert_eq!(ProductDetails::parse("", "", "", "").unwrap_err().field, "name");
        assert_eq!(
            ProductDetails::parse("a", "", &"b".repeat(101), "").unwrap_err().field,
            "brand"
        );
    }
}
