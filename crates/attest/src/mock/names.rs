//! Certificate names of the development PKI. They follow AWS's attribute sets and order, with
//! "keyward"/"mock-nsm" in place of "Amazon"/"AWS" so that no one mistakes them for the real
//! thing.

use rcgen::{DistinguishedName, DnType, DnValue};

use crate::NsmError;

/// The region-like label in names, where AWS puts e.g. `us-east-1`.
const REGION: &str = "dev-local";

fn dn(entries: &[(DnType, &str)]) -> Result<DistinguishedName, NsmError> {
    let mut name = DistinguishedName::new();
    for (kind, value) in entries {
        if *kind == DnType::CountryName {
            let printable =
                rcgen::string::PrintableString::try_from(*value).map_err(|e| NsmError::Pki(format!("name: {e}")))?;
            name.push(kind.clone(), DnValue::PrintableString(printable));
        } else {
            name.push(kind.clone(), *value);
        }
    }
    Ok(name)
}

pub(super) fn root_name() -> Result<DistinguishedName, NsmError> {
    dn(&[
        (DnType::CountryName, "US"),
        (DnType::OrganizationName, "keyward"),
        (DnType::OrganizationalUnitName, "mock-nsm"),
        (DnType::CommonName, "mock-nsm.nitro-enclaves"),
    ])
}
pub(super) fn regional_name(label: &str) -> Result<DistinguishedName, NsmError> {
    let cn = format!("{label}.{REGION}.mock-nsm.nitro-enclaves");
    dn(&[
        (DnType::CountryName, "US"),
        (DnType::OrganizationName, "keyward"),
        (DnType::OrganizationalUnitName, "mock-nsm"),
        (DnType::CommonName, &cn),
    ])
}
pub(super) fn zonal_name(label: &str) -> Result<DistinguishedName, NsmError> {
    let cn = format!("{label}.zonal.{REGION}.mock-nsm.nitro-enclaves");
    dn(&[
        (DnType::CommonName, &cn),
        (DnType::OrganizationalUnitName, "mock-nsm"),
        (DnType::OrganizationName, "keyward"),
        (DnType::CountryName, "US"),
        (DnType::StateOrProvinceName, "WA"),
        (DnType::LocalityName, "Seattle"),
    ])
}
pub(super) fn instance_name(instance_id: &str) -> Result<DistinguishedName, NsmError> {
    let cn = format!("{instance_id}.{REGION}.mock-nsm.nitro-enclaves");
    dn(&[
        (DnType::CountryName, "US"),
        (DnType::StateOrProvinceName, "Washington"),
        (DnType::LocalityName, "Seattle"),
        (DnType::OrganizationName, "keyward"),
        (DnType::OrganizationalUnitName, "mock-nsm"),
        (DnType::CommonName, &cn),
    ])
}
pub(super) fn leaf_name(module_id: &str) -> Result<DistinguishedName, NsmError> {
    let cn = format!("{module_id}.{REGION}.mock-nsm");
    dn(&[
        (DnType::CountryName, "US"),
        (DnType::StateOrProvinceName, "Washington"),
        (DnType::LocalityName, "Seattle"),
        (DnType::OrganizationName, "keyward"),
        (DnType::OrganizationalUnitName, "mock-nsm"),
        (DnType::CommonName, &cn),
    ])
}
