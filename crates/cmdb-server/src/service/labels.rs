//! Asset labels to print and stick on machines: the asset tag as a Code 128 barcode (what
//! scanners in a stocktake read), a QR code that opens the asset's page on a phone, and the host
//! name and serial in text for a person.
//!
//! The barcode and QR modules come from `barcoders` and `qrcode`; the label is one SVG composed
//! here (a path per code, text escaped), so it prints at any size and a page of labels is plain
//! HTML.

use barcoders::sym::code128::Code128;
use qrcode::{Color, QrCode};

use crate::service::ServiceError;
use crate::service::assets::AssetListItem;

/// The width of the barcode on a label, in millimetres (the label is 62 x 30 mm; the QR code takes
/// the left 26 mm).
const BARCODE_MM: f64 = 33.5;
/// The side of the QR code, in millimetres.
const QR_MM: f64 = 24.0;

/// What a label shows, ready to draw: the templates (`macros.html`, `label`) make the SVG, so
/// every text on it is escaped like any other page text.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Label {
    /// Asset id.
    pub id: i64,
    /// Host name.
    pub hostname: String,
    /// Board serial.
    pub serial: Option<String>,
    /// Asset tag.
    pub asset_tag: Option<String>,
    /// The QR code's dark modules as an SVG path of unit squares.
    pub qr: String,
    /// Millimetres per QR module.
    pub qr_scale: f64,
    /// The barcode's bars as an SVG path of unit-wide bars (none without a tag).
    pub bars: Option<String>,
    /// Millimetres per barcode module.
    pub bar_scale: f64,
}

/// The bars of `tag` in Code 128 (character set B: every printable ASCII character), as module
/// flags (true = bar), quiet zones not included.
pub fn code128_modules(tag: &str) -> Result<Vec<bool>, ServiceError> {
    let code = Code128::new(format!("\u{0181}{tag}"))
        .map_err(|e| ServiceError::invalid("/asset_tag", format!("{tag:?} cannot be a Code 128 barcode: {e}")))?;
    Ok(code.encode().into_iter().map(|m| m == 1).collect())
}

/// A path of unit squares at the given cells.
fn module_path(dark: impl Iterator<Item = (usize, usize)>) -> String {
    let mut d = String::new();
    for (x, y) in dark {
        d.push_str(&format!("M{x} {y}h1v1h-1z"));
    }
    d
}

/// The label of `item`; its QR code opens `page_url`.
pub fn label(item: &AssetListItem, page_url: &str) -> Result<Label, ServiceError> {
    let qr = QrCode::new(page_url.as_bytes())
        .map_err(|e| ServiceError::Bug(format!("the asset's URL does not fit a QR code: {e}")))?;
    let width = qr.width();
    let dark =
        qr.to_colors().into_iter().enumerate().filter(|(_, c)| *c == Color::Dark).map(|(i, _)| (i % width, i / width));
    let (bars, bar_scale) = match &item.asset_tag {
        Some(tag) => {
            let modules = code128_modules(tag)?;
            let path = module_path(modules.iter().enumerate().filter(|(_, m)| **m).map(|(x, _)| (x, 0)));
            (Some(path), BARCODE_MM / modules.len().max(1) as f64)
        }
        None => (None, 0.0),
    };
    Ok(Label {
        id: item.id,
        hostname: item.hostname.clone(),
        serial: item.serial.clone(),
        asset_tag: item.asset_tag.clone(),
        qr: module_path(dark),
        qr_scale: QR_MM / width as f64,
        bars,
        bar_scale,
    })
}

/// The page URL a label's QR code opens for asset `id`.
pub fn asset_url(public_url: &str, id: i64) -> String {
    format!("{}/assets/{id}", public_url.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code128_has_start_data_checksum_and_stop() {
        // Start B + 3 characters + checksum + stop: 11 modules each, 13 for stop.
        let modules = code128_modules("A-1").expect("encodes");
        assert_eq!(modules.len(), 11 * 5 + 13);
        assert!(modules[0] && modules[modules.len() - 1], "starts and ends with a bar");
        assert!(code128_modules("IT-2024-0001").is_ok());
    }

    #[test]
    fn a_label_has_both_codes() {
        let item = AssetListItem {
            id: 7,
            hostname: "web-01".to_owned(),
            asset_tag: Some("IT-7".to_owned()),
            status: "online".to_owned(),
            idc: None,
            cabinet: None,
            cabinet_u: None,
            business_unit: None,
            owner: None,
            tags: vec![],
            os_name: None,
            os_version: None,
            manufacturer: None,
            model: None,
            serial: Some("SN1".to_owned()),
            cpu_model: None,
            cpu_count: None,
            memory_mb: None,
            disk_bytes: None,
            ip_addresses: vec![],
            manage_address: None,
            last_seen_at: None,
            last_collected_at: None,
            created_at: chrono::DateTime::default(),
            custom: Default::default(),
        };
        let label = label(&item, "https://cmdb.example/assets/7").expect("label");
        // Version 2 QR (25 modules) for a URL this long; 24 mm across.
        assert!((label.qr_scale * 25.0 - 24.0).abs() < 1e-9 || label.qr_scale < 1.0, "{}", label.qr_scale);
        assert!(label.qr.starts_with("M0 0h1v1h-1z"), "a finder pattern in the corner");
        let bars = label.bars.expect("a tagged asset has a barcode");
        assert_eq!(bars.matches('M').count(), code128_modules("IT-7").expect("bars").iter().filter(|m| **m).count());
        let untagged = super::label(&AssetListItem { asset_tag: None, ..item }, "https://x/assets/7").expect("label");
        assert!(untagged.bars.is_none());
    }
}
