//! Row groups of a lake file copied into a new file as they are encoded,
//! with more columns beside them: the priced events are every `api_usage`
//! column plus the price columns, and only the price columns need encoding.
//!
//! A [`SourceFile`] decodes the columns asked for, one row group at a time;
//! a [`CopyWriter`] writes each row group either from the source's column
//! chunks (their pages, statistics and offset index, byte for byte) and
//! the new columns encoded, or wholly encoded from a batch (when some rows
//! of the source are dropped). Copying needs the source's columns to be the
//! writer's first columns with the same Parquet types; [`CopyWriter::can_copy`]
//! says whether they are.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};

use crate::lake::remote::RemoteObject;
use crate::lake::{Backend, Lake, Target, project, writer_props};
use crate::model::error::{Error, IoContext, Result};

/// A reader shared by the decoders of each row group.
struct Shared<T>(Arc<T>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T: Length> Length for Shared<T> {
    fn len(&self) -> u64 {
        self.0.len()
    }
}

impl<T: ChunkReader> ChunkReader for Shared<T> {
    type T = T::T;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        self.0.get_read(start)
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.0.get_bytes(start, length)
    }
}

enum Reader {
    Local(Shared<File>),
    Remote(Shared<RemoteObject>),
}

/// A lake Parquet file opened to be read by row group and copied.
pub struct SourceFile {
    path: PathBuf,
    reader: Reader,
    meta: ArrowReaderMetadata,
}

impl Lake {
    /// Opens a Parquet file of the lake for [`SourceFile::read`] and
    /// [`CopyWriter::copy_row_group`]: its footer and offset index are read.
    pub fn source_file(&self, path: &Path) -> Result<SourceFile> {
        let perr = |source| Error::Parquet {
            path: path.to_path_buf(),
            source,
        };
        let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
        let (reader, meta) = match &self.backend {
            Backend::Local { .. } => {
                let file = Shared(Arc::new(File::open(path).read_ctx(path)?));
                let meta = ArrowReaderMetadata::load(&file, options).map_err(perr)?;
                (Reader::Local(file), meta)
            }
            Backend::Remote(r) => {
                let object = Shared(Arc::new(RemoteObject::open(&r.store, &self.key(path)?)?));
                let meta = ArrowReaderMetadata::load(&object, options).map_err(perr)?;
                (Reader::Remote(object), meta)
            }
        };
        Ok(SourceFile {
            path: path.to_path_buf(),
            reader,
            meta,
        })
    }

    /// Starts a new Parquet file `<dir>/<name>.parquet` of `schema` that
    /// takes row groups copied from [`SourceFile`]s, written under a
    /// temporary name until the run commits.
    pub fn copy_writer(&self, dir: &Path, name: &str, schema: SchemaRef) -> Result<CopyWriter> {
        let (file, tmp, target) = self.new_target(dir, name)?;
        let perr = |source| Error::Parquet {
            path: tmp.clone(),
            source,
        };
        let (writer, factory) = ArrowWriter::try_new(file, schema.clone(), Some(writer_props()))
            .and_then(ArrowWriter::into_serialized_writer)
            .map_err(perr)?;
        Ok(CopyWriter {
            writer,
            factory,
            schema,
            tmp,
            target,
            row_groups: 0,
            rows: 0,
        })
    }
}

impl SourceFile {
    pub fn row_groups(&self) -> usize {
        self.meta.metadata().num_row_groups()
    }

    /// The named columns of row group `i` (all when `None`), in the file's
    /// order; a column the file lacks is not in the batch.
    pub fn read(&self, i: usize, columns: Option<&[&str]>) -> Result<RecordBatch> {
        let rows = self.meta.metadata().row_group(i).num_rows() as usize;
        let batch = match &self.reader {
            Reader::Local(r) => self.decode(r.clone(), i, rows, columns),
            Reader::Remote(r) => self.decode(r.clone(), i, rows, columns),
        }
        .map_err(|source| Error::Parquet {
            path: self.path.clone(),
            source,
        })?;
        Ok(batch)
    }

    fn decode<T: ChunkReader + 'static>(
        &self,
        reader: T,
        i: usize,
        rows: usize,
        columns: Option<&[&str]>,
    ) -> std::result::Result<RecordBatch, ParquetError> {
        // The lake's projection by name, one batch for the whole row group.
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(reader, self.meta.clone())
            .with_row_groups(vec![i]);
        let builder = project(builder, columns).with_batch_size(rows.max(1));
        let mut reader = builder.build()?;
        let schema = arrow::record_batch::RecordBatchReader::schema(&reader);
        let mut batches = Vec::new();
        for batch in &mut reader {
            batches.push(batch?);
        }
        Ok(arrow::compute::concat_batches(&schema, &batches)?)
    }
}

/// A new lake file written row group by row group (see the module docs).
pub struct CopyWriter {
    writer: SerializedFileWriter<File>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    tmp: PathBuf,
    target: Target,
    row_groups: usize,
    pub rows: usize,
}

impl CopyWriter {
    /// Whether `src`'s columns are this file's first columns, with the same
    /// Parquet types: then its row groups can be copied.
    pub fn can_copy(&self, src: &SourceFile) -> bool {
        let theirs = src.meta.metadata().file_metadata().schema_descr();
        let ours = self.writer.schema_descr();
        theirs.num_columns() < ours.num_columns()
            && (0..theirs.num_columns()).all(|c| theirs.column(c) == ours.column(c))
            // One leaf per field: the new columns are the fields after src's.
            && ours.num_columns() == self.schema.fields().len()
    }

    /// Row group `i` of `src` (see [`CopyWriter::can_copy`]) with its
    /// column chunks as they are, followed by `extra`: the values of the
    /// writer's remaining columns for the same rows.
    pub fn copy_row_group(&mut self, src: &SourceFile, i: usize, extra: &[ArrayRef]) -> Result<()> {
        let rg = src.meta.metadata().row_group(i);
        let copied = rg.num_columns();
        let rows = rg.num_rows() as usize;
        if copied + extra.len() != self.schema.fields().len()
            || extra.iter().any(|a| a.len() != rows)
        {
            return Err(Error::Lake {
                path: self.tmp.clone(),
                message: format!(
                    "row group {i} of {} has {copied} columns and {rows} rows; {} more columns of \
                     {:?} rows do not make the file's {} columns",
                    src.path.display(),
                    extra.len(),
                    extra.iter().map(|a| a.len()).collect::<Vec<_>>(),
                    self.schema.fields().len()
                ),
            });
        }
        let offsets = src.meta.metadata().page_index_for_row_group(i);
        let closes = rg
            .columns()
            .iter()
            .enumerate()
            .map(|(c, chunk)| ColumnCloseResult {
                bytes_written: chunk.compressed_size() as u64,
                rows_written: rows as u64,
                metadata: chunk.clone(),
                bloom_filter: None,
                column_index: None,
                offset_index: offsets.offset_index(c).cloned(),
            });
        let closes = closes.collect::<Vec<_>>();
        let fields = self.schema.fields()[copied..].to_vec();
        let index = self.row_groups;
        let tmp = self.tmp.clone();
        self.row_group(|factory, group| {
            for close in closes {
                match &src.reader {
                    Reader::Local(r) => group.append_column(r, close),
                    Reader::Remote(r) => group.append_column(r, close),
                }
                .map_err(|source| Error::Parquet {
                    path: src.path.clone(),
                    source,
                })?;
            }
            let writers = factory.create_column_writers(index);
            let writers = writers.map(|mut w| w.split_off(copied));
            encode(writers, &fields, extra, group)
                .map_err(|source| Error::Parquet { path: tmp, source })
        })?;
        self.rows += rows;
        Ok(())
    }

    /// A row group of `batch`'s rows, every column encoded.
    pub fn write_row_group(&mut self, batch: &RecordBatch) -> Result<()> {
        let index = self.row_groups;
        let (schema, tmp) = (self.schema.clone(), self.tmp.clone());
        self.row_group(|factory, group| {
            let writers = factory.create_column_writers(index);
            encode(writers, schema.fields(), batch.columns(), group)
                .map_err(|source| Error::Parquet { path: tmp, source })
        })?;
        self.rows += batch.num_rows();
        Ok(())
    }

    fn row_group(
        &mut self,
        fill: impl FnOnce(
            &ArrowRowGroupWriterFactory,
            &mut SerializedRowGroupWriter<'_, File>,
        ) -> Result<()>,
    ) -> Result<()> {
        let perr = |source| Error::Parquet {
            path: self.tmp.clone(),
            source,
        };
        let mut group = self.writer.next_row_group().map_err(perr)?;
        fill(&self.factory, &mut group)?;
        group.close().map_err(perr)?;
        self.row_groups += 1;
        Ok(())
    }

    /// Closes the file; gives its rename for the commit.
    pub fn finish(self) -> Result<(PathBuf, PathBuf)> {
        self.writer.close().map_err(|source| Error::Parquet {
            path: self.tmp.clone(),
            source,
        })?;
        self.target.finish()
    }
}

/// Encodes `arrays` (one per field) with `writers` and appends each column
/// to the row group.
fn encode(
    writers: parquet::errors::Result<Vec<parquet::arrow::arrow_writer::ArrowColumnWriter>>,
    fields: &[arrow::datatypes::FieldRef],
    arrays: &[ArrayRef],
    group: &mut SerializedRowGroupWriter<'_, File>,
) -> parquet::errors::Result<()> {
    for ((mut writer, field), array) in writers?.into_iter().zip(fields).zip(arrays) {
        for leaf in compute_leaves(field, array)? {
            writer.write(&leaf)?;
        }
        writer.close()?.append_to_row_group(group)?;
    }
    Ok(())
}
