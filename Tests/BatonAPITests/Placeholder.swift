// Replaced by OpenAPIDocumentTests.
