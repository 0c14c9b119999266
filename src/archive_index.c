/* archive_index: being written */
