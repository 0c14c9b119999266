/* creds: being written */
