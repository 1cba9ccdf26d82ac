-- SNIs belong to a certificate: deleting the certificate deletes its SNIs.
ALTER TABLE entities ADD COLUMN certificate_id TEXT;
CREATE INDEX entities_certificate ON entities (certificate_id);
